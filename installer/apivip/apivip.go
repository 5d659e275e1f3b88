// Package apivip puts the Kubernetes API VIP on the loopback interface of
// every control-plane server. The routers send the VIP's traffic to a
// server only while that server's BGP agent announces it (while its
// kube-apiserver answers /readyz); the address on lo is what makes the
// server accept that traffic. A oneshot systemd unit owns the address, so
// it survives reboots and reset removes it.
package apivip

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Phase IDs.
const (
	PhaseID  = "control-plane/api-vip"
	Unit     = "tricenter-api-vip.service"
	UnitPath = "/etc/systemd/system/" + Unit
)

// RenderUnit is the unit that holds vip on lo.
func RenderUnit(vip netip.Addr) []byte {
	return []byte(fmt.Sprintf(`# Written by tricenter: the Kubernetes API VIP on lo (routed here by BGP).
[Unit]
Description=tricenter: Kubernetes API VIP %[1]s on lo
Before=kube-apiserver.service tricenter-bgp.service
After=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=ip addr replace %[1]s/32 dev lo
ExecStop=-ip addr del %[1]s/32 dev lo

[Install]
WantedBy=multi-user.target
`, vip))
}

// Phase writes the unit on servers and starts it when the unit changed
// or the address is missing from lo.
func Phase(vip netip.Addr, servers []string) *phase.HostPhase {
	return &phase.HostPhase{
		ID:     PhaseID,
		Name:   "control-plane API VIP on lo",
		Select: inventory.Selector{Servers: servers},
		Apply: func(ctx context.Context, h *phase.Host) error {
			res, err := h.WriteFile(ctx, UnitPath, RenderUnit(vip), 0o644)
			if err != nil {
				return err
			}
			if res.Changed {
				if err := h.SystemctlDaemonReload(ctx); err != nil {
					return err
				}
				if err := h.Systemctl(ctx, "enable", Unit); err != nil {
					return err
				}
			}
			out, err := h.Query(ctx, "ip -o addr show dev lo")
			if err != nil {
				return err
			}
			if res.Changed || !HasAddr(out, vip) {
				return h.SystemctlRestart(ctx, Unit)
			}
			return nil
		},
	}
}

// HasAddr reports whether `ip -o addr show` output lists vip.
func HasAddr(ipOutput string, vip netip.Addr) bool {
	want := " " + vip.String() + "/32 "
	for _, l := range strings.Split(ipOutput, "\n") {
		if strings.Contains(l+" ", want) {
			return true
		}
	}
	return false
}

// RemoveCmd stops the unit (removing the address) and deletes it.
const RemoveCmd = "systemctl disable --now " + Unit + " 2>/dev/null; rm -f " + UnitPath + "; systemctl daemon-reload; true"
