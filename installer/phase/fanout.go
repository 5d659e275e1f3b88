package phase

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

// HostError is a failure on one host. It keeps the original error for
// errors.Is and errors.As.
type HostError struct {
	Host string
	Err  error
}

func (e *HostError) Error() string { return e.Host + ": " + e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// Each runs fn on every host, at most Concurrency at once (and PerCenter
// per center). A failing host does not stop the others; the result joins
// every host's *HostError. Hosts not yet started when ctx is cancelled are
// not started.
func (m *Manager) Each(ctx context.Context, hosts []*Host, fn func(ctx context.Context, h *Host) error) error {
	if err := m.init(); err != nil {
		return err
	}
	sem := make(chan struct{}, m.Concurrency)
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		if err := acquire(ctx, sem); err != nil {
			errs[i] = &HostError{Host: h.Name, Err: err}
			continue
		}
		cs := m.centerSem(h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if cs != nil {
				if err := acquire(ctx, cs); err != nil {
					errs[i] = &HostError{Host: h.Name, Err: err}
					return
				}
				defer func() { <-cs }()
			}
			start := time.Now()
			err := fn(ctx, h)
			if err != nil {
				m.Logger.Error("Host failed", "host", h.Name, "err", err, "elapsed", time.Since(start).Round(time.Millisecond))
				m.Progress.Host(h.Name, "FAILED: "+err.Error())
				errs[i] = &HostError{Host: h.Name, Err: err}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// acquire takes a slot of sem, unless ctx is done: a cancelled context
// never gets a slot, even when one is free at the same moment.
func acquire(ctx context.Context, sem chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case sem <- struct{}{}:
		if err := ctx.Err(); err != nil {
			<-sem
			return err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) centerSem(h *Host) chan struct{} {
	if m.PerCenter <= 0 || h.Center == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.centers[h.Center.Name]
	if s == nil {
		s = make(chan struct{}, m.PerCenter)
		m.centers[h.Center.Name] = s
	}
	return s
}

// retry runs op until it succeeds, fails with an error that is not
// transient, or runs out of attempts; between attempts it waits with
// exponential backoff. op gets a live connection each time (the pool
// redials a broken one).
func (m *Manager) retry(ctx context.Context, h *Host, what string, op func(c *ssh.Client) error) error {
	wait := m.Retry.Base
	var err error
	for attempt := 1; ; attempt++ {
		var c *ssh.Client
		c, err = m.pool.Client(ctx, h.Endpoint)
		if err == nil {
			err = op(c)
		}
		if err == nil || ctx.Err() != nil || !ssh.IsTransient(err) || attempt >= m.Retry.Attempts {
			if err != nil && ssh.IsTransient(err) && attempt > 1 {
				return fmt.Errorf("%s: giving up after %d attempts: %w", what, attempt, err)
			}
			return err
		}
		m.Logger.Warn("Retrying after a network error", "host", h.Name, "action", what, "attempt", attempt, "wait", wait, "err", err)
		m.Progress.Host(h.Name, fmt.Sprintf("retrying %s after: %v", what, err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, m.Retry.Max)
	}
}
