package controlplane

import (
	"context"
	"fmt"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// configure writes the certificates, keys, kubeconfigs and units of a
// control-plane server where they differ, marks the components that read
// a changed file for a restart, and reloads systemd when a unit changed.
// Private keys and kubeconfigs are written as secret content: no digest
// of them appears in the plan, the logs or on the host's command lines.
func (r *run) configure(ctx context.Context, h *phase.Host) error {
	m, ok := r.byName[h.Name]
	if !ok {
		return nil
	}
	r.mu.Lock()
	cp := r.pki
	r.mu.Unlock()
	files, err := hostFiles(r.settings, cp, m)
	if err != nil {
		return err
	}
	st := r.state(h.Name)
	unitChanged := false
	for _, f := range files {
		if st.files.same(f.path, sha256Hex(f.data), f.mode) {
			continue
		}
		var res phase.FileResult
		if f.secret {
			res, err = h.WriteSecret(ctx, r.path(f.path), f.data, f.mode)
		} else {
			res, err = h.WriteFile(ctx, r.path(f.path), f.data, f.mode)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		if !res.Changed {
			continue
		}
		for _, c := range f.readers {
			r.markChanged(h.Name, c)
		}
		if strings.HasPrefix(f.path, UnitDir+"/") {
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
