package controlplane

import (
	"context"
	"fmt"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// IDRemove is the ID of the phase Remove runs.
const IDRemove = "control-plane/remove"

func units() string {
	var u []string
	for _, c := range Components() {
		u = append(u, UnitName(c))
	}
	return strings.Join(u, " ")
}

func files() string {
	f := []string{ConfDir}
	for _, c := range Components() {
		f = append(f, UnitDir+"/"+UnitName(c))
	}
	for _, b := range Binaries() {
		f = append(f, BinDir+"/"+b)
	}
	return strings.Join(f, " ")
}

// leftoversCmd prints what Remove would clean up; nothing on a clean host.
func leftoversCmd() string {
	return `for u in ` + units() + `; do
  systemctl is-active -q "$u" 2>/dev/null && printf 'running:%s ' "$u"
  systemctl is-enabled -q "$u" 2>/dev/null && printf 'enabled:%s ' "$u"
done
for p in ` + files() + `; do test -e "$p" && printf 'file:%s ' "$p"; done
true`
}

// Remove stops and disables the control-plane units on the selected
// servers and removes their binaries, configuration, kubeconfigs and
// certificates (/etc/kubernetes). Run it after the node agents are gone:
// kubelets read /etc/kubernetes too. A clean server is left alone.
func Remove(ctx context.Context, m *phase.Manager, sel inventory.Selector) error {
	cmd := `systemctl disable --now ` + units() + ` 2>/dev/null
rm -rf ` + files() + `
systemctl daemon-reload
systemctl reset-failed ` + units() + ` 2>/dev/null
true`
	return m.Run(ctx, &phase.HostPhase{Name: "Remove the control plane", Select: sel,
		Apply: func(ctx context.Context, h *phase.Host) error {
			left, err := h.Query(ctx, leftoversCmd())
			if err != nil {
				return fmt.Errorf("looking for the control plane: %w", err)
			}
			if strings.TrimSpace(left) == "" {
				return nil
			}
			h.Logf("removing the control plane (%s)", strings.TrimSpace(left))
			return h.Run(ctx, phase.Command{Cmd: cmd, Sudo: true,
				Describe: "stop and remove kube-apiserver, kube-controller-manager, kube-scheduler and /etc/kubernetes"})
		}})
}
