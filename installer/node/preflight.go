package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// FieldFailCgroupV1 is the inventory field that lets kubelets run on
// cgroup v1.
const FieldFailCgroupV1 = "spec.kubernetes.failCgroupV1"

// cgroupQuery prints the file system type of /sys/fs/cgroup: cgroup2fs on
// a cgroup v2 (unified) host; tmpfs, holding the v1 hierarchies, on a
// cgroup v1 or hybrid one.
const cgroupQuery = "stat -fc %T /sys/fs/cgroup"

// cgroupV2FS is the type of /sys/fs/cgroup on cgroup v2.
const cgroupV2FS = "cgroup2fs"

// errCgroupV1 is wrapped when a server is on cgroup v1 and the inventory
// does not allow it.
var errCgroupV1 = errors.New("the server runs cgroup v1")

// CheckCgroup says whether a server whose /sys/fs/cgroup has file system
// type fsType may run the kubelet: on cgroup v2 always; on cgroup v1 only
// when spec.kubernetes.failCgroupV1 is false (kubelets since Kubernetes
// 1.35 refuse cgroup v1 unless their failCgroupV1 is false, which the
// kubelet configuration then says).
func CheckCgroup(fsType string, failCgroupV1 *bool) error {
	switch fsType {
	case cgroupV2FS:
		return nil
	case "":
		return errors.New("cannot tell its cgroup version: `" + cgroupQuery + "` printed nothing")
	}
	if failCgroupV1 != nil && !*failCgroupV1 {
		return nil
	}
	return fmt.Errorf("%w (/sys/fs/cgroup is %s, not %s), which kubelets since Kubernetes 1.35 refuse: boot it with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line), or set %s: false in the inventory to run the kubelet on cgroup v1",
		errCgroupV1, fsType, cgroupV2FS, FieldFailCgroupV1)
}

// preflight refuses a server the kubelet would refuse: one on cgroup v1
// unless the inventory allows it. It changes nothing.
func (r *run) preflight(ctx context.Context, h *phase.Host) error {
	out, err := h.Query(ctx, cgroupQuery)
	if err != nil {
		return fmt.Errorf("reading the cgroup version: %w", err)
	}
	return CheckCgroup(trim(out), r.o.Cluster.Spec.Kubernetes.FailCgroupV1)
}
