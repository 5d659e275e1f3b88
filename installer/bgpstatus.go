package installer

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

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
