package controlplane

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// configure writes the certificates, keys, kubeconfigs, security
// configurations and units of a control-plane server where they differ
// (phase.Host.InstallFiles), creates the audit log directory, marks the
// components that read a changed file for a restart, and reloads systemd
// when a unit changed. Private keys, kubeconfigs and the encryption
// configuration are written as secret content: no digest of them appears
// in the plan, the logs or on the host's command lines.
func (r *run) configure(ctx context.Context, h *phase.Host) error {
	m, ok := r.byName[h.Name]
	if !ok {
		return nil
	}
	r.mu.Lock()
	cp, ring := r.pki, r.ring
	r.mu.Unlock()
	files, err := hostFiles(r.settings, cp, ring, m)
	if err != nil {
		return err
	}
	if err := r.ensureAuditDir(ctx, h); err != nil {
		return err
	}
	install := make([]phase.File, len(files))
	for i, f := range files {
		install[i] = phase.File{Path: r.path(f.path), Data: f.data, Mode: f.mode, Secret: f.secret}
	}
	done, err := h.InstallFiles(ctx, "", install)
	if err != nil {
		return fmt.Errorf("writing the control-plane configuration: %w", err)
	}
	unitChanged := false
	for _, f := range files {
		if !done.Has(r.path(f.path)) {
			continue
		}
		for _, c := range f.readers {
			r.markChanged(h.Name, c)
		}
		if path.Dir(f.path) == UnitDir {
			unitChanged = true
		}
	}
	if unitChanged {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return fmt.Errorf("reloading systemd units: %w", err)
		}
	}
	return nil
}

// auditDirState is what the audit log directory must be: "mode owner".
const auditDirState = "700 root:root"

// ensureAuditDir creates AuditLogDir 0700, owned by root, before
// kube-apiserver starts (it would create it 0755 itself), and puts the
// mode and owner back when they drifted. Nothing changes when they are
// right.
func (r *run) ensureAuditDir(ctx context.Context, h *phase.Host) error {
	d := shell.Quote(r.path(AuditLogDir))
	out, err := h.Query(ctx, "stat -c '%a %U:%G' -- "+d+" 2>/dev/null || true")
	if err != nil {
		return fmt.Errorf("reading %s: %w", AuditLogDir, err)
	}
	if strings.TrimSpace(out) == auditDirState {
		return nil
	}
	return h.Run(ctx, phase.Command{Sudo: true,
		Cmd:      "mkdir -p -m 0700 -- " + d + " && chown root:root -- " + d + " && chmod 0700 -- " + d,
		Describe: "create the audit log directory " + AuditLogDir + " (0700, root)"})
}
