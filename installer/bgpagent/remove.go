package bgpagent

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Remove stops the agent on the selected servers — its sessions close, so
// the routers withdraw the node's pod CIDR and VIPs at once — and removes
// its binary, unit and configuration (with the TCP MD5 password file). A
// clean server is left alone.
func Remove(ctx context.Context, m *phase.Manager, sel inventory.Selector) error {
	dir := path.Dir(bgp.DefaultConfigFile)
	left := `systemctl is-active -q ` + UnitName + ` 2>/dev/null && printf 'running '
for p in ` + BinaryPath + ` ` + UnitPath + ` ` + dir + `; do test -e "$p" && printf 'file:%s ' "$p"; done
true`
	cmd := `systemctl disable --now ` + UnitName + ` 2>/dev/null
rm -rf ` + BinaryPath + ` ` + UnitPath + ` ` + dir + `
systemctl daemon-reload
systemctl reset-failed ` + UnitName + ` 2>/dev/null
true`
	return m.Run(ctx, &phase.HostPhase{ID: IDRemove, Name: "Remove the BGP agent", Select: sel,
		Apply: func(ctx context.Context, h *phase.Host) error {
			out, err := h.Query(ctx, left)
			if err != nil {
				return fmt.Errorf("looking for the BGP agent: %w", err)
			}
			if strings.TrimSpace(out) == "" {
				return nil
			}
			return h.Run(ctx, phase.Command{Cmd: cmd, Sudo: true,
				Describe: "stop tricenter-bgp (its routes are withdrawn) and remove it"})
		}})
}
