package installer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// bootQueryTimeout bounds asking one server for its boot id: a server that
// does not answer within it is "not verified", not waited for.
const bootQueryTimeout = 10 * time.Second

// bootIDs asks servers for their current boot id through m's connections
// (the pool redials a connection the server's reboot broke, so the answer
// is the running boot's).
func bootIDs(m *phase.Manager) health.BootReader {
	return func(ctx context.Context, names []string) map[string]*health.Boot {
		out := map[string]*health.Boot{}
		hosts, err := m.Hosts(inventory.Selector{Servers: names})
		if err != nil {
			for _, n := range names {
				out[n] = &health.Boot{Err: err}
			}
			return out
		}
		var mu sync.Mutex
		_ = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
			qctx, cancel := context.WithTimeout(ctx, bootQueryTimeout)
			defer cancel()
			id, err := h.Query(qctx, "cat "+health.BootIDPath)
			b := &health.Boot{ID: strings.TrimSpace(id), Err: err}
			if err != nil {
				b.Err = errors.New(unreachableReason(err))
			}
			mu.Lock()
			out[h.Name] = b
			mu.Unlock()
			return nil
		})
		return out
	}
}

// unreachableReason shortens an SSH error for a status line.
func unreachableReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i > 0 && len(s) > 120 {
		s = s[i+2:]
	}
	return "server not reachable: " + s
}

// NodeHealth observes the named servers' Nodes now by the one rule of
// package health: the Ready condition, a fresh kubelet heartbeat and, with
// askServers, the server's own boot id (over a new SSH session; a server
// that cannot be asked is "not verified"). An API that does not answer is
// an error.
func (e *Engine) NodeHealth(ctx context.Context, names []string, askServers bool) ([]health.Node, error) {
	cs, err := e.Clientset()
	if err != nil {
		return nil, err
	}
	var boots health.BootReader
	if askServers {
		m := e.ObserveManager()
		defer m.Close()
		boots = bootIDs(m)
	}
	return health.Observe(ctx, cs, names, boots, e.cfg.Clock)
}
