package controlplane

import (
	"context"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// binaries uploads kube-apiserver, kube-controller-manager,
// kube-scheduler and kubectl where they differ, through the install record
// BinariesRecord (phase.Host.InstallFiles). A changed daemon binary marks
// its component for a restart.
func (r *run) binaries(ctx context.Context, h *phase.Host) error {
	files := make([]phase.File, 0, len(Binaries()))
	for _, b := range Binaries() {
		files = append(files, phase.File{Path: r.path(BinDir + "/" + b), Local: r.o.Binaries[b], Mode: 0o755})
	}
	done, err := h.InstallFiles(ctx, r.path(BinariesRecord), files)
	if err != nil {
		return fmt.Errorf("installing the control-plane binaries: %w", err)
	}
	for _, b := range Components() {
		if done.Has(r.path(BinDir + "/" + b)) {
			r.markChanged(h.Name, b)
		}
	}
	return nil
}
