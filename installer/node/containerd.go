package node

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"text/template"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// Keys of Options.Binaries for the container runtime: the artifact names
// of containerd 2, its runc shim, ctr and runc (hack/artifacts builds them
// from their pinned modules); the CNI plugins are keyed by their names
// (CNIPlugins).
const (
	BinContainerd     = "containerd"
	BinContainerdShim = "containerd-shim-runc-v2"
	BinCtr            = "ctr"
	BinRunc           = "runc"
)

// RuntimeBinaries are the artifacts node/containerd installs: containerd,
// containerd-shim-runc-v2, ctr, runc and the CNI plugins.
func RuntimeBinaries() []string {
	return append([]string{BinContainerd, BinContainerdShim, BinCtr, BinRunc}, CNIPlugins...)
}

// RuntimePath is where node/containerd installs a runtime artifact:
// containerd, its shim and ctr in BinDir, runc in SbinDir (as upstream's
// install does), the CNI plugins in CNIBinDir.
func RuntimePath(key string) string {
	switch {
	case key == BinRunc:
		return path.Join(SbinDir, key)
	case slices.Contains(CNIPlugins, key):
		return path.Join(CNIBinDir, key)
	}
	return path.Join(BinDir, key)
}

// restartsContainerd reports whether a changed file at p needs containerd
// restarted: its binary, its shim, runc, its configuration and its unit do;
// ctr and the CNI plugins (run afresh for every pod) do not.
func restartsContainerd(p string) bool {
	return p != RuntimePath(BinCtr) && path.Dir(p) != CNIBinDir
}

// ContainerdParams are the settings of containerd's config.toml.
type ContainerdParams struct {
	// SandboxImage is the pause image (imported, never pulled).
	SandboxImage string
	Profile      Profile
}

// containerdTmpl is containerd 2's configuration, version 3 (key names as
// in containerd v2.4's docs/cri/config.md): the CRI plugin is split into
// io.containerd.cri.v1.images (snapshotter, the pinned sandbox image) and
// io.containerd.cri.v1.runtime (runtimes, CNI, the OCI spec options).
// Version 4 (containerd 2.3+) only moves the grpc, ttrpc and metrics server
// sections, which this file does not set, into plugins: containerd 2.4
// migrates this file in memory at start (a warning, microseconds), and the
// file stays readable by every containerd 2.
var containerdTmpl = template.Must(template.New("config.toml").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(
	`# Written by tricenter: changes are overwritten on the next apply.
version = 3

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {{q .SandboxImage}}

  [plugins.'io.containerd.cri.v1.runtime']
{{- if .Nspawn}}
    # nspawn machines: no CAP_SYS_RESOURCE, no hugetlb cgroup.
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
{{- end}}
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {{q .Runc}}
          SystemdCgroup = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{{q .BinDir}}]
      conf_dir = {{q .ConfDir}}
      max_conf_num = 1
`))

// RenderContainerd renders /etc/containerd/config.toml (config version 3,
// containerd 2): the pause image pinned as sandbox image, overlayfs, runc
// v2 (tricenter's runc, by path) with the systemd cgroup driver (the
// kubelet's), the CNI directories, and the nspawn extras.
func RenderContainerd(p ContainerdParams) ([]byte, error) {
	var b bytes.Buffer
	err := containerdTmpl.Execute(&b, struct {
		ContainerdParams
		Nspawn                bool
		Runc, BinDir, ConfDir string
	}{p, p.Profile == ProfileNspawn, RuntimePath(BinRunc), CNIBinDir, CNIConfDir})
	return b.Bytes(), err
}

// RenderContainerdUnit renders containerd.service, after upstream's
// (containerd v2.4 containerd.service): containerd manages its shims' cgroups
// (Delegate), a restart leaves the running containers alone
// (KillMode=process), and the OOM killer spares it. Like upstream's unit
// since containerd 2.0 it sets no LimitNOFILE: containers inherit the
// service's soft limit, and the Go runtime raises containerd's own.
func RenderContainerdUnit() []byte {
	return []byte(`# Written by tricenter: changes are overwritten on the next apply.
[Unit]
Description=containerd container runtime (tricenter)
Documentation=https://containerd.io
After=network.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=` + RuntimePath(BinContainerd) + `
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`)
}

// containerd installs the container runtime from the artifact set
// (containerd, its shim, ctr, runc, the CNI plugins: phase.Host.InstallFiles,
// recorded in ContainerdRecord), its configuration and unit, and restarts
// containerd only when one of its files changed (or it is not running).
func (r *run) containerd(ctx context.Context, h *phase.Host) error {
	cfg, err := RenderContainerd(ContainerdParams{SandboxImage: r.o.PauseImage, Profile: r.o.Profile})
	if err != nil {
		return err
	}
	var files []phase.File
	for _, k := range RuntimeBinaries() {
		files = append(files, phase.File{Path: RuntimePath(k), Local: r.o.Binaries[k], Mode: 0o755})
	}
	files = append(files,
		phase.File{Path: ContainerdConfig, Data: cfg},
		phase.File{Path: ContainerdUnitFile, Data: RenderContainerdUnit()})
	done, err := h.InstallFiles(ctx, ContainerdRecord, files)
	if err != nil {
		return fmt.Errorf("installing containerd: %w", err)
	}
	if done.Has(ContainerdUnitFile) {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return err
		}
	}
	return ensureRunning(ctx, h, ContainerdUnit, slices.ContainsFunc(done.Changed, restartsContainerd))
}
