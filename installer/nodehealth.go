package installer

import (
	"context"
	"errors"
	"fmt"
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

// NodeReport is what ObserveNode found on one server.
type NodeReport struct {
	// Reached is false when the Kubernetes API could not be asked;
	// Problems then says why.
	Reached bool
	// Problems lists what is not as planned: the Node not registered or
	// not Ready by the health rule, the BGP agent not answering, a
	// session not Established. Empty: the node is as planned.
	Problems []string
}

// nodeObserveTimeout bounds asking the API about one Node.
const nodeObserveTimeout = 30 * time.Second

// ObserveNode observes one server now: its Node by the one health rule
// (Ready condition, fresh heartbeat, the server's own boot id) and its BGP
// agent's sessions, both asked at once over one observing connection.
func (e *Engine) ObserveNode(ctx context.Context, name string) NodeReport {
	if _, ok := e.cfg.Cluster.Host(name); !ok {
		return NodeReport{Problems: []string{fmt.Sprintf("server %s is not in the inventory", name)}}
	}
	m := e.ObserveManager()
	defer m.Close()
	var (
		wg    sync.WaitGroup
		nodes []health.Node
		nerr  error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		cs, err := e.Clientset()
		if err != nil {
			nerr = err
			return
		}
		gctx, cancel := context.WithTimeout(ctx, nodeObserveTimeout)
		defer cancel()
		nodes, nerr = health.Observe(gctx, cs, []string{name}, bootIDs(m), e.cfg.Clock)
	}()
	var bgpProblems []string
	if hosts, err := m.Hosts(inventory.Selector{Servers: []string{name}}); err != nil {
		bgpProblems = append(bgpProblems, "BGP agent: "+err.Error())
	} else {
		sts, errs := BGPStatuses(ctx, m, hosts)
		if err := errs[name]; err != nil {
			bgpProblems = append(bgpProblems, "BGP agent on "+name+": "+err.Error())
		} else if st := sts[name]; st != nil {
			for _, s := range st.Sessions {
				if !s.Established() {
					bgpProblems = append(bgpProblems, fmt.Sprintf("BGP session %s (%s) is %s", s.Name, s.Address, s.State))
				}
			}
		}
	}
	wg.Wait()
	if nerr != nil {
		return NodeReport{Problems: []string{"Kubernetes API: " + nerr.Error()}}
	}
	r := NodeReport{Reached: true}
	for _, n := range nodes {
		switch {
		case !n.Registered:
			r.Problems = append(r.Problems, "Node "+name+" is not registered")
		case !n.Ready:
			r.Problems = append(r.Problems, "Node "+name+" is not Ready: "+n.Reason)
		}
	}
	r.Problems = append(r.Problems, bgpProblems...)
	return r
}
