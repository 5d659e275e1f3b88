package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// waitReachable waits until every server of the run accepts an SSH
// session, retrying each one every couple of seconds until o.WaitReachable
// has passed: servers that were just powered on through their BMCs are
// still booting (a VM takes tens of seconds). Without WaitReachable it
// does nothing; the components' first connection fails as usual.
func (e *Engine) waitReachable(ctx context.Context, m *phase.Manager, o Options) error {
	if o.WaitReachable <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.WaitReachable)
	defer cancel()
	var hosts []string
	for _, h := range e.cfg.Cluster.Hosts() {
		if len(o.Servers) == 0 || slices.Contains(o.Servers, h.Name) {
			hosts = append(hosts, h.Name)
		}
	}
	start := time.Now()
	e.log.Info("Waiting for the servers to accept SSH", "servers", len(hosts), "limit", o.WaitReachable)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, name := range hosts {
		h, _ := e.cfg.Cluster.Host(name)
		ep := phase.EndpointFor(e.cfg.Cluster, h, e.cfg.bastion)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := m.SSHClient(ctx, ep)
				if err == nil {
					errs[i] = nil
					return
				}
				errs[i] = err
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("servers not reachable over SSH after %v: %w", o.WaitReachable, err)
	}
	e.log.Info("Every server accepts SSH", "servers", len(hosts), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
