package node

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"text/template"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// ContainerdParams are the settings of containerd's config.toml.
type ContainerdParams struct {
	// SandboxImage is the pause image (imported, never pulled).
	SandboxImage string
	Profile      Profile
}

var containerdTmpl = template.Must(template.New("config.toml").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(
	`# Written by tricenter: changes are overwritten on the next apply.
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = {{q .SandboxImage}}
{{- if .Nspawn}}
    # nspawn machines: no CAP_SYS_RESOURCE, no hugetlb cgroup.
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
{{- end}}
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = {{q .BinDir}}
      conf_dir = {{q .ConfDir}}
      max_conf_num = 1
`))

// RenderContainerd renders /etc/containerd/config.toml: the pause image
// as sandbox image, overlayfs, runc v2 with the systemd cgroup driver (the
// kubelet's), the Debian CNI directories, and the nspawn extras.
func RenderContainerd(p ContainerdParams) ([]byte, error) {
	var b bytes.Buffer
	err := containerdTmpl.Execute(&b, struct {
		ContainerdParams
		Nspawn          bool
		BinDir, ConfDir string
	}{p, p.Profile == ProfileNspawn, CNIBinDir, CNIConfDir})
	return b.Bytes(), err
}

// containerd writes the configuration and restarts containerd only when it
// changed (or containerd is not running).
func (r *run) containerd(ctx context.Context, h *phase.Host) error {
	missing, err := h.Query(ctx, `for b in containerd ctr runc; do command -v "$b" >/dev/null || printf '%s ' "$b"; done`)
	if err != nil {
		return fmt.Errorf("looking for containerd: %w", err)
	}
	if m := trim(missing); m != "" {
		return fmt.Errorf("%s not installed: the host image needs the Debian packages containerd and runc", m)
	}
	cfg, err := RenderContainerd(ContainerdParams{SandboxImage: r.o.PauseImage, Profile: r.o.Profile})
	if err != nil {
		return err
	}
	res, err := h.WriteFile(ctx, ContainerdConfig, cfg, 0o644)
	if err != nil {
		return err
	}
	return ensureRunning(ctx, h, ContainerdUnit, res.Changed)
}
