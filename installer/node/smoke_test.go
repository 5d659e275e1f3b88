package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// staticPod runs the pause image on the pod network: kubelet starts it from
// its manifest directory without an API server, so it proves containerd's
// configuration, the imported image, the CNI network and the kubelet's
// settings inside an nspawn machine.
const staticPod = `apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: default
spec:
  containers:
  - name: pause
    image: registry.k8s.io/pause:3.10.2
    imagePullPolicy: Never
`

// TestNodeAgentsOnNspawnMachine installs the node agents with the real
// phases over SSH on a real nspawn machine whose image has no container
// runtime (containerd 2, runc, the CNI plugins, kubelet and kube-proxy all
// from make artifacts), checks that containerd took tricenter's
// configuration, runs a pod on the pod network, checks that a re-run
// changes nothing and that Remove leaves the machine clean.
func TestNodeAgentsOnNspawnMachine(t *testing.T) {
	if err := nspawn.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn machine: %w", err))
	}
	cache, err := nspawn.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins := map[string]string{}
	for _, key := range append([]string{node.BinKubelet, node.BinKubeProxy, node.ImagePause, node.ImageCoreDNS},
		node.RuntimeBinaries()...) {
		p := filepath.Join(cache, "artifacts", artifacts.DefaultName(key))
		if _, err := os.Stat(p); err != nil {
			testenv.Need(t, fmt.Errorf("%s is not built: run make artifacts", p))
		}
		bins[key] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, kh := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	data, err := os.ReadFile(filepath.Join("testdata", "smoke-inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nspawn.ParseInventory(data, map[string]string{"KEYFILE": key, "KNOWNHOSTS": kh})
	if err != nil {
		t.Fatal(err)
	}
	const name = "kn-s1"
	start := time.Now()
	lab, err := nspawn.Up(ctx, nspawn.Config{Cluster: c, Rootfs: rootfs, Hosts: []string{name}, NoFRR: true, NoDelay: true,
		Dir: filepath.Join(cache, "nspawn", "machines", "node-"+filepath.Base(filepath.Dir(dir))), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	t.Logf("machine up in %v", time.Since(start).Round(time.Millisecond))
	m := lab.Machine(name)
	run := func(cmd string) (string, error) {
		out, err := exec.CommandContext(ctx, "ssh", "-i", key, "-o", "UserKnownHostsFile="+kh,
			"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
			"root@"+m.Address.String(), cmd).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := run("systemctl is-system-running --wait >/dev/null; command -v containerd runc ctr; ls /lib/systemd/system/containerd.service 2>/dev/null; true"); out != "" || err != nil {
		t.Fatalf("the machine image of %s holds a container runtime (%v):\n%s", name, err, out)
	}

	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	ca, err := store.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	opts := node.Options{Cluster: c, IPs: ips, PKI: store, CA: ca.CertPEM,
		Server: "https://" + ips.APIVIP.String() + ":6443", Binaries: bins, Profile: node.ProfileNspawn,
		Select: inventory.Selector{Servers: []string{name}}, Logger: log}
	apply := func(dry bool) map[string][]string {
		t.Helper()
		phases, err := node.Phases(opts)
		if err != nil {
			t.Fatal(err)
		}
		mgr := &phase.Manager{Cluster: c, DryRun: dry, Logger: log}
		defer mgr.Close()
		start := time.Now()
		if err := mgr.Run(ctx, phases...); err != nil {
			t.Fatalf("node phases (dry run %v): %v", dry, err)
		}
		t.Logf("node phases (dry run %v) in %v", dry, time.Since(start).Round(time.Millisecond))
		return mgr.Changes()
	}

	// A dry run changes nothing and lists the work.
	plan := apply(true)
	if len(plan[name]) == 0 {
		t.Fatal("dry run lists no change on a fresh machine")
	}
	if out, _ := run("test -e " + node.KubeletConfig + " && echo present"); out == "present" {
		t.Fatal("the dry run wrote the kubelet configuration")
	}

	first := apply(false)
	joined := strings.Join(first[name], "\n")
	for _, want := range []string{"upload /usr/local/bin/kubelet", "restart kubelet.service", "restart kube-proxy.service",
		"upload /usr/local/bin/containerd", "upload /usr/local/sbin/runc", "upload /opt/cni/bin/bridge",
		"restart containerd.service", "ctr -n k8s.io images import"} {
		if !strings.Contains(joined, want) {
			t.Errorf("first apply did not %q:\n%s", want, joined)
		}
	}
	// The install records name each uploaded file with the sha256 of the
	// artifact, so the re-apply below trusts them instead of hashing.
	for rec, local := range map[string]string{node.KubeletRecord + " /usr/local/bin/kubelet": bins[node.BinKubelet],
		node.KubeProxyRecord + " /usr/local/bin/kube-proxy":               bins[node.BinKubeProxy],
		node.ImagesRecord + " " + node.ImageDir + "/" + node.ImageCoreDNS: bins[node.ImageCoreDNS],
		node.ContainerdRecord + " /usr/local/bin/containerd":              bins[node.BinContainerd],
		node.ContainerdRecord + " /opt/cni/bin/portmap":                   bins["portmap"]} {
		file, path, _ := strings.Cut(rec, " ")
		sum, err := fsutil.FileSHA256(local)
		if err != nil {
			t.Fatal(err)
		}
		out, err := run("cat " + file)
		if err != nil || !strings.Contains(out, sum+" ") || !strings.Contains(out, " "+path) {
			t.Errorf("install record %s lacks %s with sha256 %s (%v):\n%s", file, path, sum, err, out)
		}
	}
	// containerd 2 took the version 3 configuration: its merged view holds
	// tricenter's values (a key it did not know would be missing).
	dump, err := run("containerd config dump")
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, dump)
	}
	for _, want := range []string{`sandbox = '` + node.DefaultPause + `'`, `snapshotter = 'overlayfs'`,
		`restrict_oom_score_adj = true`, `tolerate_missing_hugetlb_controller = true`, `SystemdCgroup = true`,
		`BinaryName = '/usr/local/sbin/runc'`, `bin_dirs = ['/opt/cni/bin']`, `conf_dir = '/etc/cni/net.d'`} {
		if !strings.Contains(dump, want) {
			t.Errorf("containerd config dump lacks %s:\n%s", want, dump)
		}
	}
	// containerd 2 runs on this host's cgroup v1 with a deprecation
	// warning (ctr prints it): shown, not fatal.
	if out, _ := run("ctr deprecations list 2>/dev/null | grep -i cgroup"); out != "" {
		t.Logf("containerd deprecation: %s", out)
	}
	if out, err := run("containerd --version; runc --version | head -1"); err != nil || !strings.Contains(out, "v2.") {
		t.Errorf("runtime versions (%v):\n%s", err, out)
	} else {
		t.Logf("runtime: %s", strings.ReplaceAll(out, "\n", "; "))
	}
	imgs, err := run("ctr -n k8s.io images ls -q 2>/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	refs, err := node.ParseImageList(imgs)
	if err != nil {
		t.Fatal(err)
	}
	if !refs[node.DefaultPause] || !refs[node.DefaultCoreDNS] {
		t.Fatalf("images after apply: %v", refs)
	}
	if out, _ := run("ctr -n k8s.io images ls 2>/dev/null | grep -F " + node.DefaultCoreDNS); !strings.Contains(out, "io.cri-containerd.pinned=pinned") {
		t.Errorf("imported CoreDNS image not pinned against image GC:\n%s", out)
	}

	// The static pod runs (its sandbox and its container are running
	// tasks) with an address from the node's pod CIDR, held by its
	// sandbox: CNI hands out an address before runc starts the sandbox,
	// so an address alone proves nothing.
	cidr, _ := ips.PodCIDR(name)
	if out, err := run("mkdir -p " + node.StaticPodDir + " && cat > " + node.StaticPodDir + "/smoke.yaml <<'EOF'\n" + staticPod + "EOF"); err != nil {
		t.Fatalf("writing the static pod: %v\n%s", err, out)
	}
	podStart := time.Now()
	deadline := podStart.Add(2 * time.Minute)
	var podIP netip.Addr
	for podIP == (netip.Addr{}) {
		running := map[string]bool{}
		tasks, _ := run("ctr -n k8s.io tasks ls 2>/dev/null")
		for _, l := range strings.Split(tasks, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[2] == "RUNNING" {
				running[f[0]] = true
			}
		}
		out, _ := run("cd " + node.CNIStateDir + "/networks/" + node.CNINetwork + " 2>/dev/null && for f in *; do echo \"$f $(head -1 \"$f\")\"; done")
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				continue
			}
			if a, err := netip.ParseAddr(f[0]); err == nil && cidr.Contains(a) && running[f[1]] && len(running) >= 2 {
				podIP = a
			}
		}
		if podIP.IsValid() {
			break
		}
		if time.Now().After(deadline) {
			// Without an API server the kubelet repeats that its mirror
			// pod has no node: left out.
			logs, _ := run("systemctl status kubelet --no-pager | tail -5; journalctl -u kubelet --no-pager | grep -v 'mirror pod' | tail -40; " +
				"echo; journalctl -u containerd --no-pager | grep -v -i deprecat | tail -30")
			t.Fatalf("the static pod is not running with an address from %s within 2m (tasks %v); kubelet and containerd:\n%s", cidr, running, logs)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("static pod on the pod network at %s after %v", podIP, time.Since(podStart).Round(time.Millisecond))
	gw, err := run("ip -4 -o addr show " + node.CNIBridge)
	if err != nil || !strings.Contains(gw, cidr.Addr().Next().String()+"/") {
		t.Errorf("bridge %s does not hold the pods' gateway %s: %v\n%s", node.CNIBridge, cidr.Addr().Next(), err, gw)
	}
	if out, err := run("iptables -t nat -S POSTROUTING"); err != nil || strings.Contains(out, cidr.String()) {
		t.Errorf("pod traffic is NATed (CNI ipMasq) or iptables failed: %v\n%s", err, out)
	}
	if out, err := run("sysctl -n net.ipv4.ip_forward"); err != nil || out != "1" {
		t.Errorf("ip_forward %q after apply: %v", out, err)
	}
	for _, u := range []string{"kubelet", "kube-proxy", "containerd"} {
		if out, err := run("systemctl is-active " + u); err != nil {
			t.Errorf("%s is %s after apply", u, out)
		}
	}

	// Hardening: the pod's containers run under the runtime's default
	// seccomp profile (seccompDefault), the pod is limited to
	// DefaultPodPidsLimit tasks, and the agents' files are 0600 root:root.
	ids, err := run("ctr -n k8s.io containers ls -q 2>/dev/null")
	if err != nil || len(strings.Fields(ids)) < 2 {
		t.Fatalf("containers of the static pod: %v\n%s", err, ids)
	}
	for _, id := range strings.Fields(ids) {
		if out, err := run("ctr -n k8s.io containers info " + id + " | grep -c SCMP_ACT_ERRNO"); err != nil || out == "0" {
			t.Errorf("container %s runs without the RuntimeDefault seccomp profile (%v): %s", id, err, out)
		}
	}
	if out, err := run("find /sys/fs/cgroup -maxdepth 5 -path '*kubepods*-pod*.slice/pids.max' -exec cat {} +"); err != nil ||
		!strings.Contains(out, fmt.Sprint(node.DefaultPodPidsLimit)) {
		t.Errorf("no pod cgroup has pids.max %d (%v): %q", node.DefaultPodPidsLimit, err, out)
	}
	private := []string{node.KubeletUnitFile, node.KubeletConfig, node.KubeletKubeconfig, node.KubeletCA, node.KubeletCert,
		node.KubeletKey, node.KubeProxyUnitFile, node.KubeProxyConfig, node.KubeProxyKubecfg}
	checkModes := func() {
		t.Helper()
		out, err := run("stat -c '%a %U:%G %n' " + strings.Join(private, " "))
		if err != nil {
			t.Fatalf("stat: %v\n%s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "600 root:root ") {
				t.Errorf("want 600 root:root: %s", l)
			}
		}
	}
	checkModes()
	// nspawn machines share the host's kernel: no protectKernelDefaults,
	// no kernel settings file.
	if out, _ := run("test -e " + node.KernelTunablesConfig + " && echo present"); out == "present" {
		t.Errorf("%s written in an nspawn machine", node.KernelTunablesConfig)
	}
	if out, err := run("grep -E '^(protectKernelDefaults|seccompDefault|podPidsLimit|readOnlyPort|tlsMinVersion):' " + node.KubeletConfig); err != nil ||
		strings.Contains(out, "protectKernelDefaults") || !strings.Contains(out, "seccompDefault: true") || !strings.Contains(out, "readOnlyPort: 0") {
		t.Errorf("kubelet configuration on the machine (%v):\n%s", err, out)
	}
	// A node installed by an earlier release (0644 files) converges: the
	// modes are fixed in place and the agents restarted once.
	if out, err := run("chmod 644 " + node.KubeletConfig + " " + node.KubeletUnitFile + " " + node.KubeProxyConfig); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	fixed := strings.Join(apply(false)[name], "\n")
	for _, want := range []string{"chmod 600 " + node.KubeletConfig, "chmod 600 " + node.KubeletUnitFile, "chmod 600 " + node.KubeProxyConfig,
		"restart kubelet.service", "restart kube-proxy.service"} {
		if !strings.Contains(fixed, want) {
			t.Errorf("the apply after a mode drift did not %q:\n%s", want, fixed)
		}
	}
	if strings.Contains(fixed, "write ") || strings.Contains(fixed, "upload ") {
		t.Errorf("a mode drift rewrote content:\n%s", fixed)
	}
	checkModes()

	// Re-apply: nothing uploaded, written or restarted.
	if again := apply(false); len(again) != 0 {
		t.Errorf("re-apply changed %v", again)
	}

	// Remove, then nothing is left; a second Remove changes nothing.
	rm := func() map[string][]string {
		t.Helper()
		mgr := &phase.Manager{Cluster: c, Logger: log}
		defer mgr.Close()
		if err := node.Remove(ctx, mgr, inventory.Selector{Servers: []string{name}}); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		return mgr.Changes()
	}
	if ch := rm(); len(ch[name]) == 0 {
		t.Fatal("Remove changed nothing on a node with agents")
	}
	for _, u := range []string{node.KubeletUnit, node.KubeProxyUnit} {
		if out, _ := run("systemctl is-active " + u); out == "active" {
			t.Errorf("%s still active after Remove", u)
		}
	}
	for _, p := range []string{node.KubeletDir, node.KubeProxyDir, node.CNIConfig, node.BinDir + "/kubelet", node.KubeletUnitFile} {
		if out, _ := run("test -e " + p + " && echo left"); out == "left" {
			t.Errorf("%s left after Remove", p)
		}
	}
	for _, d := range []string{node.KubeletStateDir, node.CNIStateDir} {
		if out, _ := run("ls -A " + d + " 2>/dev/null"); out != "" {
			t.Errorf("%s not empty after Remove: %s", d, out)
		}
	}
	if _, err := run("ip link show " + node.CNIBridge); err == nil {
		t.Errorf("bridge %s left after Remove", node.CNIBridge)
	}
	if out, _ := run("ctr -n k8s.io tasks ls -q 2>/dev/null"); out != "" {
		t.Errorf("containers left after Remove: %s", out)
	}
	if ch := rm(); len(ch) != 0 {
		t.Errorf("second Remove changed %v", ch)
	}
	if out, _ := run("ctr -n k8s.io images ls -q 2>/dev/null"); !strings.Contains(out, node.DefaultPause) {
		t.Errorf("Remove dropped the imported images (a rejoining server would import them again):\n%s", out)
	}
}
