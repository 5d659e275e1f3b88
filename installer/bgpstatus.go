package installer

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// BGPAgentStatuses asks the agent on each named server (none named: every
// server) for its sessions and announcements, one short attempt per server
// (ObserveManager): a server that does not answer is in the errors at
// once. The error is for names the inventory does not have.
func (e *Engine) BGPAgentStatuses(ctx context.Context, servers []string) (map[string]*bgp.Status, map[string]error, error) {
	m := e.ObserveManager()
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: servers})
	if err != nil {
		return nil, nil, err
	}
	sts, errs := BGPStatuses(ctx, m, hosts)
	return sts, errs, nil
}

// BGPStatuses asks the agent on each host for its sessions and
// announcements (a read-only query, also in a dry run).
func BGPStatuses(ctx context.Context, m *phase.Manager, hosts []*phase.Host) (map[string]*bgp.Status, map[string]error) {
	var mu sync.Mutex
	statuses := map[string]*bgp.Status{}
	errs := map[string]error{}
	cmd := bgpagent.BinaryPath + " status -o json --socket " + bgp.DefaultStatusSocket
	_ = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		out, err := h.Query(ctx, cmd)
		var st bgp.Status
		if err == nil {
			if jerr := json.Unmarshal([]byte(out), &st); jerr != nil {
				err = fmt.Errorf("reading the agent's status: %w", jerr)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs[h.Name] = err
			return err
		}
		statuses[h.Name] = &st
		return nil
	})
	return statuses, errs
}
