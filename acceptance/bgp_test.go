package acceptance

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// fakeReadyzPort is where a fake kube-apiserver /readyz (socat answering
// 200) listens on the control-plane machines, so their agents announce the
// API VIP without a real apiserver.
const fakeReadyzPort = 18080

// labSSH runs command on a lab machine with the OpenSSH client and the
// lab's pinned host keys; it returns stdout.
func labSSH(ctx context.Context, key, kh string, m *nspawn.Machine, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "ssh", "-i", key, "-o", "UserKnownHostsFile="+kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
		"root@"+m.Address.String(), command)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ssh %s %q: %w: %s", m.Name, command, err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// The success path of `tricenter bgp install` and `tricenter bgp status`,
// for real: the CLI uploads tricenter-bgp to the seven machines of the
// acceptance lab (acceptance/testdata/nspawn-lab.yaml, on addresses of its
// own) over SSH, installs and starts its unit, and the agents
// establish sessions with the lab's FRR router (configured by render-frr's
// code), which learns every pod CIDR and the API VIP and installs them in
// its kernel table. Stopping one agent withdraws its route: the routes come
// from BGP, not from static configuration.
func TestBGPInstallAndStatusOnLab(t *testing.T) {
	if err := nspawn.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab: %w", err))
	}
	if err := bgplab.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab router: %w", err))
	}
	root := repoRoot(t)
	cache := filepath.Join(root, ".cache")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// The real binaries.
	cli, agent := filepath.Join(dir, "tricenter"), filepath.Join(dir, "tricenter-bgp")
	for bin, pkg := range map[string]string{cli: "./cmd/tricenter", agent: "./cmd/tricenter-bgp"} {
		gb := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
		gb.Dir, gb.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := gb.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}

	// The acceptance lab inventory, with this test's key and known_hosts.
	key, kh := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	data, err := os.ReadFile(filepath.Join(root, "acceptance/testdata/nspawn-lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory.yaml")
	// Its addresses move to a block of their own (racks 198.19.31-35.0/24,
	// pods 198.19.36.0/22, services 198.19.30.0/24, VIP 198.19.40.10): labs
	// share the host's root namespace, where each rack bridge has an
	// address, so a lab of the same inventory run by another test at
	// the same time must not collide with this one.
	s := strings.NewReplacer(".cache/nspawn-lab/id_ed25519", key, ".cache/nspawn-lab/known_hosts", kh,
		"artifactDir: .cache/artifacts", "artifactDir: "+filepath.Join(cache, "artifacts"),
		"198.19.1.", "198.19.31.", "198.19.2.", "198.19.32.", "198.19.3.", "198.19.33.",
		"198.19.4.", "198.19.34.", "198.19.5.", "198.19.35.",
		"podCIDR: 198.19.128.0/17", "podCIDR: 198.19.36.0/22", "podMaskSize: 24", "podMaskSize: 26",
		// The servers' pinned pod CIDRs, /24s of 198.19.128.0/17 there,
		// /26s of 198.19.36.0/22 here.
		"podCIDR: 198.19.128.0/24", "podCIDR: 198.19.36.0/26", "podCIDR: 198.19.129.0/24", "podCIDR: 198.19.36.64/26",
		"podCIDR: 198.19.130.0/24", "podCIDR: 198.19.36.128/26", "podCIDR: 198.19.131.0/24", "podCIDR: 198.19.36.192/26",
		"podCIDR: 198.19.132.0/24", "podCIDR: 198.19.37.0/26", "podCIDR: 198.19.133.0/24", "podCIDR: 198.19.37.64/26",
		"podCIDR: 198.19.134.0/24", "podCIDR: 198.19.37.128/26",
		"serviceCIDR: 198.19.96.0/20", "serviceCIDR: 198.19.30.0/24",
		"apiVIP: 198.19.120.10", "apiVIP: 198.19.40.10").Replace(string(data))
	for _, want := range []string{"198.19.36.0/22", "198.19.30.0/24", "198.19.40.10", "198.19.35.0/24", "198.19.37.128/26"} {
		if !strings.Contains(s, want) {
			t.Fatalf("the example inventory changed: %s not substituted", want)
		}
	}
	if err := os.WriteFile(inv, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := nspawn.ParseInventory([]byte(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cache, "nspawn", "machines"), 0o755); err != nil {
		t.Fatal(err)
	}
	mdir, err := os.MkdirTemp(filepath.Join(cache, "nspawn", "machines"), "bgp-")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lab, err := nspawn.Up(ctx, nspawn.Config{Cluster: c, Rootfs: rootfs, Logger: log, Dir: mdir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	t.Logf("lab: %d machines and the FRR router up in %v", len(lab.Machines()), time.Since(start).Round(time.Millisecond))
	plan := lab.BGPPlan()
	if plan == nil || len(plan.Nodes) != 7 {
		t.Fatalf("lab BGP plan: %+v", plan)
	}

	// A fake /readyz on the control-plane machines (no apiserver here),
	// and a CA file where the agent's check expects the Kubernetes CA (it
	// loads it even for an http URL).
	caPEM := testCA(t)
	var cp []bgp.Node
	for _, n := range plan.Nodes {
		if n.ControlPlane {
			cp = append(cp, n)
			cmd := fmt.Sprintf("mkdir -p /etc/kubernetes/pki && cat > /etc/kubernetes/pki/ca.crt <<'EOF'\n%sEOF\n"+
				"cat > /usr/local/bin/fake-readyz <<'EOF'\n#!/bin/sh\nprintf 'HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'\nEOF\n"+
				"chmod 0755 /usr/local/bin/fake-readyz && "+
				"systemd-run --unit fake-readyz socat TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr EXEC:/usr/local/bin/fake-readyz", caPEM, fakeReadyzPort)
			if out, err := labSSH(ctx, key, kh, lab.Machine(n.Name), cmd); err != nil {
				t.Fatalf("fake readyz: %v %s", err, out)
			}
		}
	}
	if len(cp) != 5 {
		t.Fatalf("%d control-plane nodes, want 5", len(cp))
	}

	run := func(args ...string) (string, string, error) {
		cmd := exec.CommandContext(ctx, cli, append(args, "--state-dir", filepath.Join(dir, "state"), "--log-level", "warn")...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	installArgs := []string{"bgp", "install", "-f", inv, "--binary", agent,
		"--api-health-url", fmt.Sprintf("http://127.0.0.1:%d/readyz", fakeReadyzPort)}
	start = time.Now()
	out, errOut, err := run(installArgs...)
	if err != nil {
		t.Fatalf("bgp install: %v\nstdout: %s\nstderr: %s", err, out, tailLines(errOut, 30))
	}
	t.Logf("bgp install on 7 machines (upload, unit, sessions Established): %v", time.Since(start).Round(time.Millisecond))
	for _, n := range plan.Nodes {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, n.Name+": ") {
				lines = append(lines, l)
			}
		}
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "tricenter-bgp") }) {
			t.Errorf("bgp install reported no tricenter-bgp change on %s:\n%s", n.Name, out)
		}
		if st, err := labSSH(ctx, key, kh, lab.Machine(n.Name), "systemctl is-active tricenter-bgp.service"); err != nil || st != "active" {
			t.Errorf("%s: tricenter-bgp.service is %q: %v", n.Name, st, err)
		}
	}

	// bgp status: every session Established, every pod CIDR and the VIP
	// announced.
	// (The agents announce the VIP after their first health check: poll.)
	var rep bgp.GateReport
	if _, err := bgplab.WaitFor(20*time.Second, 200*time.Millisecond, func() (bool, error) {
		out, errOut, err = run("bgp", "status", "-f", inv, "--require-api-vip", "-o", "json")
		rep = bgp.GateReport{}
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			return false, fmt.Errorf("%w / %w\nstdout: %s\nstderr: %s", err, jerr, out, tailLines(errOut, 30))
		}
		if err != nil || !rep.OK {
			return false, fmt.Errorf("gate failed (%w): %s", err, out)
		}
		return true, nil
	}); err != nil {
		journal, _ := labSSH(ctx, key, kh, lab.Machine(cp[0].Name), "journalctl -u tricenter-bgp -u fake-readyz --no-pager -n 30")
		t.Fatalf("bgp status: %v\n%s: agent and fake readyz log:\n%s", err, cp[0].Name, journal)
	}
	if len(rep.Nodes) != 7 {
		t.Fatalf("bgp status shows %d nodes, want 7: %+v", len(rep.Nodes), rep.Nodes)
	}
	for _, n := range rep.Nodes {
		if !n.OK || len(n.Sessions) != 1 || !strings.Contains(n.Sessions[0], " Established ") {
			t.Errorf("bgp status %s: %+v", n.Node, n)
		}
	}

	// The router: seven sessions, every pod CIDR via its node and the VIP
	// via every control-plane node, in FRR's table and in the kernel.
	want := map[string][]string{}
	for _, n := range plan.Nodes {
		want[n.PodCIDR.String()] = []string{n.Address.String()}
	}
	var vipHops []string
	for _, n := range cp {
		vipHops = append(vipHops, n.Address.String())
	}
	slices.Sort(vipHops)
	want[plan.APIVIP.String()+"/32"] = vipHops
	waited, err := bgplab.WaitFor(30*time.Second, 50*time.Millisecond, func() (bool, error) {
		ns, err := lab.BGPNeighbors()
		if err != nil {
			return false, err
		}
		up := 0
		for _, n := range ns {
			if n.Established() {
				up++
			}
		}
		if up != 7 {
			return false, fmt.Errorf("%d of 7 sessions Established: %+v", up, ns)
		}
		for _, get := range []func() (map[string][]string, error){lab.BGPRoutes, func() (map[string][]string, error) { return lab.KernelRoutes(ctx) }} {
			got, err := get()
			if err != nil {
				return false, err
			}
			for p, hops := range want {
				if !slices.Equal(got[p], hops) {
					return false, fmt.Errorf("route %s via %v, want %v (table %v)", p, got[p], hops, got)
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	t.Logf("router: 7 sessions Established, %d pod CIDRs and the VIP (ECMP over %d) in FRR and the kernel (waited %v)",
		len(plan.Nodes), len(vipHops), waited.Round(time.Millisecond))

	// Pod traffic between racks of different centers follows those routes:
	// a "pod" address (the first of each pod CIDR, on the node's loopback)
	// reaches another rack's pod address through the router.
	var worker, other bgp.Node
	for _, n := range plan.Nodes {
		if !n.ControlPlane && worker.Name == "" {
			worker = n
		}
	}
	for _, n := range plan.Nodes {
		if n.Site != worker.Site {
			other = n // the remote center: 20 ms away
			break
		}
	}
	podIP := func(n bgp.Node) string { return n.PodCIDR.Addr().Next().String() }
	for _, n := range []bgp.Node{worker, other} {
		if out, err := lab.Machine(n.Name).Command(ctx, "ip", "addr", "add", podIP(n)+"/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Fatalf("%s: pod address: %v %s", n.Name, err, out)
		}
	}
	var podOut []byte
	podPing := func() error {
		out, err := lab.Machine(other.Name).Command(ctx, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", "-I", podIP(other), podIP(worker)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s (%s) → %s (%s): %w: %s", podIP(other), other.Name, podIP(worker), worker.Name, err, out)
		}
		podOut = out
		return nil
	}
	if err := podPing(); err != nil {
		t.Fatalf("pod to pod across centers: %v", err)
	}
	// rtt min/avg/max/mdev = 20.101/20.215/20.402/0.090 ms
	var rttMin float64
	if i := bytes.Index(podOut, []byte("= ")); i < 0 {
		t.Fatalf("ping output: %s", podOut)
	} else if _, err := fmt.Sscanf(string(podOut[i+2:]), "%f/", &rttMin); err != nil {
		t.Fatalf("ping output %q: %v", podOut, err)
	}
	if rttMin < 15 {
		t.Errorf("pod RTT %s (%s) ↔ %s (%s) is %.1f ms: the 20 ms between the sites is missing", other.Name, other.Center, worker.Name, worker.Center, rttMin)
	}
	t.Logf("pod %s (%s, %s) reaches pod %s (%s, %s) through the router's BGP routes, min RTT %.1f ms",
		podIP(other), other.Name, other.Center, podIP(worker), worker.Name, worker.Center, rttMin)
	// The test process reaches a pod through the router too.
	if err := lab.RouteFromHost(ctx, worker.PodCIDR); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "ping", "-n", "-q", "-c", "1", "-W", "2", podIP(worker)).CombinedOutput(); err != nil {
		t.Fatalf("ping %s from the host through the lab router: %v\n%s", podIP(worker), err, out)
	}

	// A second install changes nothing.
	out, errOut, err = run(installArgs...)
	if err != nil || !strings.Contains(out, "converged: nothing to do") {
		t.Fatalf("second bgp install: %v\nstdout: %s\nstderr: %s", err, out, tailLines(errOut, 30))
	}

	// Routes come from BGP: a stopped agent's pod CIDR leaves the router,
	// and its pods are unreachable.
	if _, err := labSSH(ctx, key, kh, lab.Machine(worker.Name), "systemctl stop tricenter-bgp.service"); err != nil {
		t.Fatal(err)
	}
	waited, err = bgplab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		got, err := lab.KernelRoutes(ctx)
		if err != nil {
			return false, err
		}
		if hops, ok := got[worker.PodCIDR.String()]; ok {
			return false, fmt.Errorf("%s's pod CIDR %s still routed via %v", worker.Name, worker.PodCIDR, hops)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s's agent stopped: its pod CIDR left the router's kernel table in %v", worker.Name, waited.Round(time.Millisecond))
	if err := podPing(); err == nil {
		t.Fatalf("%s's pod address still answers after its route was withdrawn: a route other than BGP's reaches it", worker.Name)
	}
}

// testCA returns a throwaway self-signed CA certificate (PEM).
func testCA(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
