package nspawn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// artifact returns the path of a `make artifacts` output, failing (CI) or
// skipping the test when it was not built.
func artifact(t *testing.T, name string) string {
	t.Helper()
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(cache, "artifacts", name)
	if _, err := os.Stat(p); err != nil {
		testenv.Need(t, fmt.Errorf("%s is not built: run make artifacts (or hack/artifacts/build.sh pause coredns)", p))
	}
	return p
}

// sshInput runs command on m with the file at path as its stdin.
func sshInput(ctx context.Context, key, kh string, m *Machine, path, command string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "ssh", "-i", key, "-o", "UserKnownHostsFile="+kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
		"root@"+m.Address.String(), command)
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// installRuntime puts containerd 2, its shim, ctr and runc from the
// artifact set on m, with tricenter's nspawn configuration and unit
// (installer/node renders them), and starts containerd: what node/containerd
// does, without the phase engine.
func installRuntime(ctx context.Context, t *testing.T, key, kh string, m *Machine) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := node.RenderContainerd(node.ContainerdParams{SandboxImage: node.DefaultPause, Profile: node.ProfileNspawn})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, b := range []string{node.BinContainerd, node.BinContainerdShim, node.BinCtr, node.BinRunc} {
		files[node.RuntimePath(b)] = artifact(t, b)
	}
	for remote, data := range map[string][]byte{node.ContainerdConfig: cfg, node.ContainerdUnitFile: node.RenderContainerdUnit()} {
		local := filepath.Join(dir, filepath.Base(remote))
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files[remote] = local
	}
	for remote, local := range files {
		mode := "0755"
		if remote == node.ContainerdConfig || remote == node.ContainerdUnitFile {
			mode = "0644"
		}
		if out, err := sshInput(ctx, key, kh, m, local, "mkdir -p "+filepath.Dir(remote)+" && cat > "+remote+" && chmod "+mode+" "+remote); err != nil {
			t.Fatalf("%s: installing %s: %v\n%s", m.Name, remote, err, out)
		}
	}
	if out, err := sshRun(ctx, key, kh, m, "systemctl daemon-reload && systemctl enable --now "+node.ContainerdUnit); err != nil {
		t.Fatalf("%s: starting containerd: %v\n%s", m.Name, err, out)
	}
}

// Two machines run containerd 2 from the artifact set side by side (the
// image holds no container runtime), each in its own cgroups, with what
// kubelet needs from the machine (writable cgroups and /proc/sys/net,
// /dev/kmsg, non-overlay state, the host sysctls), and a pause sandbox
// from the air-gapped OCI tarball runs under containerd in both.
func TestMachinesRunContainerd(t *testing.T) {
	pause := artifact(t, "pause.oci.tar")
	artifact(t, node.BinContainerd)
	before := map[string]string{}
	for k := range HostSysctls {
		v, err := readSysctl(k)
		if err != nil {
			t.Fatal(err)
		}
		before[k] = v
	}
	t.Cleanup(func() {
		// Runs after the lab's Close: the host is as it was, unless a lab
		// of another test process still holds it.
		if _, err := os.Stat(filepath.Join(hostPrepDir, "sysctl.json")); err == nil {
			t.Log("another lab holds the host sysctls: not checking their restoration")
			return
		}
		for k, v := range before {
			if got, _ := readSysctl(k); got != v {
				t.Errorf("host sysctl %s is %s after the lab closed, was %s", k, got, v)
			}
		}
	})
	lab, key, kh := startLab(t, "testdata/two-nodes.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for k, v := range HostSysctls {
		if got, _ := readSysctl(k); got != v {
			t.Errorf("host sysctl %s is %s while the lab runs, want %s", k, got, v)
		}
	}

	containerdCgroup := map[string]string{} // machine → containerd's host pid
	t0 := time.Now()
	for _, m := range lab.Machines() {
		run := func(cmd string) string {
			t.Helper()
			out, err := sshRun(ctx, key, kh, m, cmd)
			if err != nil {
				t.Fatalf("%s: %s: %v\n%s", m.Name, cmd, err, out)
			}
			return out
		}
		run("systemctl is-system-running --wait >/dev/null || true; systemctl is-active tricenter-nspawn-prep")
		t.Logf("%s: booted (systemd running) after %v", m.Name, time.Since(t0).Round(time.Millisecond))
		if out := run("command -v containerd runc ctr || true"); out != "" {
			t.Errorf("%s: the machine image holds a container runtime: %s", m.Name, out)
		}
		installRuntime(ctx, t, key, kh, m)
		run("systemctl is-active containerd")
		if out := run("ctr version"); !strings.Contains(out, "Server:") || !strings.Contains(out, "v2.") {
			t.Errorf("%s: ctr version does not reach containerd:\n%s", m.Name, out)
		}
		if out := run("findmnt -rn -t cgroup,cgroup2 -O ro -o TARGET || true"); out != "" {
			t.Errorf("%s: read-only cgroup mounts left: %s", m.Name, out)
		}
		run("sysctl -qw net.ipv4.ip_forward=1 && test -c /dev/kmsg")
		for _, d := range stateDirs {
			if fs := run("stat -f -c %T " + d); fs == "overlayfs" {
				t.Errorf("%s: %s is on %s: containerd's snapshotter needs a non-overlay directory", m.Name, d, fs)
			}
		}
		if out := run("cat /etc/hostname /etc/machine-id"); !strings.HasPrefix(out, m.Name+"\n") {
			t.Errorf("%s: hostname/machine-id %q", m.Name, out)
		}
		// containerd sits in the machine's own cgroups (seen from the
		// host: inside, the paths are relative to the machine's cgroup
		// namespace), in its own service's cgroup in every hierarchy that
		// systemd manages (it re-probed the controllers once they were
		// writable).
		pids := map[string]bool{}
		for _, dir := range m.cg.dirs {
			var leaves []string
			_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
				if err != nil || e.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, pid := range strings.Fields(string(b)) {
					if comm, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(comm)) == "containerd" {
						pids[pid] = true
						leaves = append(leaves, filepath.Dir(p))
					}
				}
				return nil
			})
			if len(leaves) != 1 {
				t.Errorf("%s: containerd in %v under the machine's cgroup %s, want exactly one", m.Name, leaves, dir)
				continue
			}
			managed := strings.Contains(dir, "/memory/") || strings.Contains(dir, "/pids/") || strings.Contains(dir, "/systemd/")
			if managed && filepath.Base(leaves[0]) != "containerd.service" {
				t.Errorf("%s: containerd's cgroup is %s, want its own containerd.service", m.Name, leaves[0])
			}
		}
		if len(pids) != 1 {
			t.Errorf("%s: containerd pids in the machine's cgroups: %v, want one", m.Name, pids)
		}
		for pid := range pids {
			containerdCgroup[m.Name] = pid
		}
		t.Logf("%s: containerd checked after %v", m.Name, time.Since(t0).Round(time.Millisecond))

		start := time.Now()
		out, err := sshInput(ctx, key, kh, m, pause, "ctr -n k8s.io images import - && ctr -n k8s.io images ls -q")
		if err != nil || !strings.Contains(out, "registry.k8s.io/pause:3.10.2") {
			t.Fatalf("%s: importing pause.oci.tar: %v\n%s", m.Name, err, out)
		}
		t.Logf("%s: pause image imported in %v", m.Name, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		run("ctr -n k8s.io run -d registry.k8s.io/pause:3.10.2 pause-probe")
		out = run("for i in $(seq 50); do ctr -n k8s.io task ls | grep -q 'pause-probe.*RUNNING' && break; sleep 0.1; done; ctr -n k8s.io task ls")
		if !strings.Contains(out, "RUNNING") {
			t.Fatalf("%s: the pause sandbox is not running:\n%s", m.Name, out)
		}
		t.Logf("%s: pause sandbox running under containerd after %v", m.Name, time.Since(start).Round(time.Millisecond))
		run("ctr -n k8s.io task kill -s KILL pause-probe; for i in $(seq 50); do ctr -n k8s.io task ls | grep -q pause-probe || break; ctr -n k8s.io task rm pause-probe >/dev/null 2>&1; sleep 0.1; done; ctr -n k8s.io containers rm pause-probe")
	}
	if len(containerdCgroup) != 2 || containerdCgroup["kn-a1"] == containerdCgroup["kn-b1"] {
		t.Errorf("each machine's cgroups should hold its own containerd: %v", containerdCgroup)
	}
	if cd := filepath.Join(filepath.Dir(pause), "coredns.oci.tar"); fileExists(cd) {
		m := lab.Machine("kn-b1")
		out, err := sshInput(ctx, key, kh, m, cd, "ctr -n k8s.io images import - >/dev/null && ctr -n k8s.io run --rm registry.k8s.io/coredns/coredns:v1.12.0 coredns-probe /coredns -version")
		if err != nil || !strings.Contains(out, "CoreDNS-1.12.0") {
			t.Errorf("%s: CoreDNS image: %v\n%s", m.Name, err, out)
		}
		version := out
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "CoreDNS-") { // ctr's warnings aside
				version = l
			}
		}
		t.Logf("%s: coredns.oci.tar imported and ran: %s", m.Name, version)
	} else {
		t.Logf("coredns.oci.tar is not built (hack/artifacts/build.sh coredns): CoreDNS image not checked")
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
