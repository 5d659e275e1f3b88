package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// The state directory's writer lock:
//
//	DIR/<cluster>/lock          held (flock) by the one run that may change the cluster
//	DIR/<cluster>/lock.holder   who holds it (pid, host, command, start time)

// ErrLocked is wrapped when another run holds the state directory past
// the wait.
var ErrLocked = errors.New("another run holds the state directory")

const lockPoll = 250 * time.Millisecond

func (d *Dir) lockPath() string   { return filepath.Join(d.Path, "lock") }
func (d *Dir) holderPath() string { return filepath.Join(d.Path, "lock.holder") }

// Lock takes the state directory's writer lock (an flock the kernel
// releases when the holder dies, even by kill -9), writing holder (one
// line naming the run) beside it. While another run holds it, Lock waits up
// to wait, telling waiting once with the holder's line, then fails with
// ErrLocked naming it. unlock releases it.
func (d *Dir) Lock(ctx context.Context, holder string, wait time.Duration, waiting func(holder string)) (unlock func(), err error) {
	f, err := os.OpenFile(d.lockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the state lock: %w", err)
	}
	start := time.Now()
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", d.lockPath(), err)
		}
		h := d.Holder()
		if time.Since(start) >= wait {
			f.Close()
			return nil, fmt.Errorf("%w %s: %s (waited %v)", ErrLocked, d.Path, h, time.Since(start).Round(time.Second))
		}
		if !told && waiting != nil {
			waiting(h)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
	if err := fsutil.WriteFileAtomic(d.holderPath(), []byte(holder+"\n"), 0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("recording the state lock's holder: %w", err)
	}
	return func() {
		_ = os.Remove(d.holderPath())
		f.Close()
	}, nil
}

// Holder says who holds the state directory's lock, as its holder wrote
// it; a holder killed before it could remove its line is still named
// (the lock itself is free then).
func (d *Dir) Holder() string {
	b, err := os.ReadFile(d.holderPath())
	if err != nil {
		return "a run that did not say who it is"
	}
	return strings.TrimSpace(string(b))
}
