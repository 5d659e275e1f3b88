package controlplane

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// PhaseRemove is the ID of the phase Remove runs.
const PhaseRemove = "control-plane/remove"

// Remove stops and disables kube-apiserver, kube-controller-manager and
// kube-scheduler on the selected servers and removes what the control
// plane installed there: units, certificates and keys, kubeconfigs, the
// audit, authentication, admission and encryption configurations and
// binaries (kubectl included), and /etc/kubernetes once it is empty. The
// audit logs under /var/log/kubernetes/audit stay: they are records.
// Other files under /etc/kubernetes (the node agents') are left alone: run
// it after node.Remove for a clean server. A clean server is left alone, so Remove is
// idempotent and a dry run lists only the servers that would change.
func Remove(ctx context.Context, m *phase.Manager, sel inventory.Selector) error {
	return m.Run(ctx, removePhase(sel, ""))
}

func removePhase(sel inventory.Selector, root string) phase.Phase {
	return &removeStep{id: PhaseRemove, HostPhase: phase.HostPhase{Name: "control-plane remove", Select: sel,
		Apply: func(ctx context.Context, h *phase.Host) error { return remove(ctx, h, root) }}}
}

type removeStep struct {
	phase.HostPhase
	id string
}

// ID is the stable phase ID.
func (p *removeStep) ID() string { return p.id }

// removedPaths are every file the control plane installs, under root.
func removedPaths(root string) []string {
	var out []string
	add := func(p string) {
		if root != "" {
			p = path.Join(root, p)
		}
		out = append(out, shell.Quote(p))
	}
	for _, p := range managedFiles() {
		add(p)
	}
	add(BinariesRecord)
	for _, b := range Binaries() {
		add(BinDir + "/" + b)
	}
	return out
}

func unitList() string {
	var us []string
	for _, c := range Components() {
		us = append(us, UnitName(c))
	}
	return strings.Join(us, " ")
}

// leftoversCmd prints what remove would clean up, one word per item;
// nothing on a clean server.
func leftoversCmd(root string) string {
	return `for u in ` + unitList() + `; do
  systemctl is-active -q "$u" 2>/dev/null && printf 'running:%s ' "$u"
  systemctl is-enabled -q "$u" 2>/dev/null && printf 'enabled:%s ' "$u"
done
for p in ` + strings.Join(removedPaths(root), " ") + `; do test -e "$p" && printf 'file:%s ' "$p"; done
true`
}

// removeCmd stops the units and removes the files, then the certificate
// directories and /etc/kubernetes when nothing else is left in them (a
// full reset removes the node agents first, so the server ends clean).
func removeCmd(root string) string {
	pki, conf := path.Join("/", root, PKIDir), path.Join("/", root, ConfDir)
	return `systemctl disable --now ` + unitList() + ` 2>/dev/null
rm -f ` + strings.Join(removedPaths(root), " ") + `
rmdir ` + shell.Quote(pki+"/etcd") + ` ` + shell.Quote(pki) + ` ` + shell.Quote(conf) + ` 2>/dev/null
systemctl daemon-reload
systemctl reset-failed ` + unitList() + ` 2>/dev/null
true`
}

func remove(ctx context.Context, h *phase.Host, root string) error {
	left, err := h.Query(ctx, leftoversCmd(root))
	if err != nil {
		return fmt.Errorf("looking for the control plane: %w", err)
	}
	left = strings.TrimSpace(left)
	if left == "" {
		return nil
	}
	h.Logf("removing the control plane (%s)", left)
	return h.Run(ctx, phase.Command{Cmd: removeCmd(root), Sudo: true,
		Describe: "stop and remove kube-apiserver, kube-controller-manager, kube-scheduler, their certificates, kubeconfigs and binaries"})
}
