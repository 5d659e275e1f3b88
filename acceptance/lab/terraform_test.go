//go:build labacc

// The lab's Terraform acceptance test (make testacc): examples/lab/main.tf
// against the whole example lab, VMs included. It takes a quarter of an
// hour and most of the machine, so it runs on its own, not in make test.

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	tcartifacts "github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/libvirt"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// stepTimer records how long each step of the test took.
type stepTimer struct {
	t     testing.TB
	lines []string
}

// step runs f and records its time under name; an error ends the test.
func (s *stepTimer) step(name string, f func() error) {
	s.t.Helper()
	start := time.Now()
	err := f()
	line := fmt.Sprintf("%-48s %v", name, time.Since(start).Round(100*time.Millisecond))
	s.lines = append(s.lines, line)
	s.t.Log(line)
	if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
}

// TestLabTerraform runs examples/lab/main.tf with the real terraform binary
// and the provider built from this checkout (a dev_overrides CLI
// configuration, as a user runs it) against the whole lab: lab up, every
// server powered on through its BMC, SSH through the jump hosts, etcd
// across the centers, control plane, nodes Ready, BGP routes on the TORs
// and the core routers, kubectl with the output kubeconfig; the loss of
// dc1 (a libvirt VM among its servers) by powering every server of it off
// through its BMC, with writes and the API probed; power back on, the
// center rejoins and the next plan is empty; destroy powers every server
// off; lab down leaves nothing.
//
// terraform-plugin-testing cannot run this configuration: its state shim
// rejects resources keyed by for_each ("unexpected index type (string) ...
// for_each is not supported", in its post-test destroy too), and the
// example keys servers and nodes by name. terraform-exec drives the same
// terraform binary instead.
func TestLabTerraform(t *testing.T) {
	timer := &stepTimer{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	l := startTerraformLab(t, ctx, timer)
	tf, rec, s, vars, bin, artifacts, dir := l.tf, l.rec, l.spec, l.vars, l.bin, l.artifacts, l.dir
	kubeconfig := filepath.Join(t.TempDir(), "admin.conf")
	stateDir := filepath.Join(t.TempDir(), "state")
	var allNodes, dc1 []string
	for _, sv := range rec.Servers {
		allNodes = append(allNodes, sv.Name)
		if sv.Center == "dc1" {
			dc1 = append(dc1, sv.Name)
		}
	}

	timer.step("terraform apply (power on → cluster → nodes)", func() error { return tf.Apply(ctx, vars) })
	st, err := tf.Show(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cl := attributes(t, st, "tricenter_cluster.lab")
	for k, want := range map[string]any{"healthy": true, "api_server_url": "https://" + s.Spec.Network.APIVIP + ":6443"} {
		if cl[k] != want {
			t.Errorf("tricenter_cluster.lab %s = %v, want %v", k, cl[k], want)
		}
	}
	if m, _ := cl["etcd_members"].(map[string]any); len(m) != 5 {
		t.Errorf("etcd_members = %v, want 5 members", cl["etcd_members"])
	}
	for _, sv := range rec.Servers {
		a := attributes(t, st, fmt.Sprintf("tricenter_server.lab[%q]", sv.Name))
		if a["observed_power_state"] != "on" || a["fru_serial"] != "LAB-"+sv.Name || a["fru_model"] != "lab "+sv.Machine {
			t.Errorf("tricenter_server.lab[%q]: power %v, FRU serial %v, model %v", sv.Name, a["observed_power_state"], a["fru_serial"], a["fru_model"])
		}
	}
	// The VM with boot: pxe came up from its NIC: iPXE fetched its script,
	// the kernel and the initramfs from the lab's TFTP server; the other
	// VM booted from its disk.
	for _, sv := range rec.Servers {
		if sv.Machine != MachineLibvirt {
			continue
		}
		served, err := libvirt.PXEServed(rec.PXELog, netip.MustParseAddr(sv.Address))
		if err != nil {
			t.Fatal(err)
		}
		want := []string(nil)
		if sv.Boot == BootPXE {
			want = []string{domainPrefix(rec.Name) + sv.Name + ".ipxe", "vmlinuz", "initrd.img"}
		}
		if !slices.Equal(served, want) {
			t.Errorf("server %s (boot %q): TFTP sent it %q, want %q", sv.Name, sv.Boot, served, want)
		} else {
			t.Logf("server %s (boot %q): TFTP sent it %q", sv.Name, sv.Boot, served)
		}
	}
	for _, w := range []string{"dc1-r01-w01", "dc2-r01-w01", "dc3-r01-w01"} {
		if a := attributes(t, st, fmt.Sprintf("tricenter_node.worker[%q]", w)); a["ready"] != true {
			t.Errorf("tricenter_node.worker[%q] ready = %v", w, a["ready"])
		}
	}
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprint(cl["kubeconfig"])), 0o600); err != nil {
		t.Fatal(err)
	}
	timer.step("kubectl: every node Ready with center and rack", func() error {
		return nodesReady(ctx, artifacts, kubeconfig, allNodes, 3*time.Minute)
	})
	timer.step("BGP routes on the TORs and the core routers", func() error { return routesOnRouter(rec, s) })
	timer.step("terraform plan after apply (empty)", func() error { return planSettled(ctx, t, tf, vars) })

	files, format, err := state.DecodeBlob(fmt.Sprint(cl["state"]))
	if err != nil {
		t.Fatalf("engine state: %v", err)
	}
	if format != state.BlobFormat {
		t.Fatalf("engine state in Terraform state has format %d, want %d", format, state.BlobFormat)
	}
	if err := state.Restore(filepath.Join(stateDir, s.Metadata.Name), files); err != nil {
		t.Fatal(err)
	}
	var rep *etcd.DrillReport
	timer.step("center-loss drill dc1 through the BMCs", func() error {
		rep, err = drill(ctx, bin, rec.Inventory, stateDir, "dc1")
		return err
	})
	t.Logf("drill dc1: power-off %v, writes resumed %v after the loss, longest gap %v, %d acknowledged, %d lost (verified %v), healthy %v after power-on",
		rep.PowerOffTook, rep.ResumedAfter, rep.WriteGap, rep.Acknowledged, rep.Lost, rep.Verified, rep.RestoredHealthy)
	for _, p := range rep.Probes {
		t.Logf("drill probe %s: %d checks, %d failed, longest gap %v", p.Name, p.Attempts, p.Failures, p.MaxGap)
	}
	poweredOn := map[string]time.Time{}
	for _, sv := range rep.Servers {
		poweredOn[sv.Name] = sv.OnAt
	}
	timer.step("rejoin: dc1's kubelets back, every node Ready", func() error {
		if err := kubeletsBack(ctx, artifacts, kubeconfig, dc1, poweredOn, 5*time.Minute); err != nil {
			return err
		}
		if err := nodesReady(ctx, artifacts, kubeconfig, allNodes, 5*time.Minute); err != nil {
			return err
		}
		return statusHealthy(ctx, bin, rec.Inventory, stateDir, 5*time.Minute)
	})
	timer.step("terraform plan after the drill (empty)", func() error { return planSettled(ctx, t, tf, vars) })
	timer.step("terraform apply after the drill (no-op)", func() error { return tf.Apply(ctx, vars) })
	if st, err = tf.Show(ctx); err != nil {
		t.Fatal(err)
	}
	if a := attributes(t, st, "tricenter_cluster.lab"); a["healthy"] != true {
		t.Errorf("after the drill the cluster is not healthy: %v", a["problems"])
	}

	timer.step("terraform destroy (reset, power off)", func() error { return tf.Destroy(ctx, vars) })
	l.destroyed = true
	// Every BMC of the lab, asked as `lab status` asks them.
	after, err := Status(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range rec.Servers {
		if p := after.Power[sv.Name]; p != "off" {
			t.Errorf("after destroy server %s is %q, want off", sv.Name, p)
		}
	}
}

// tfLab is the example lab up, with terraform pointed at examples/lab and
// the provider built from this checkout.
type tfLab struct {
	tf             *tfexec.Terraform
	vars           *tfexec.VarFileOption
	rec            *Record
	spec           *Spec
	bin, artifacts string // the CLI; the artifact directory
	dir            string // the lab's directory
	// destroyed: terraform destroy ran; otherwise the cleanup runs it
	// before lab down (skipDestroy: lab down alone).
	destroyed, skipDestroy bool
}

// startTerraformLab builds the CLI, the lab and the provider (a
// dev_overrides CLI configuration, as a user runs it), copies
// examples/lab/main.tf into a working directory and brings the lab up.
// The cleanup destroys what terraform made (unless the test did), takes
// the lab down, checks that nothing is left and logs the timer's steps.
func startTerraformLab(t testing.TB, ctx context.Context, timer *stepTimer) *tfLab {
	t.Helper()
	needLab(t)
	testenv.Need(t, libvirt.Available())
	testenv.Exclusive(t, "the lab's Terraform test")
	testenv.Terraform(t)
	tfPath := os.Getenv("TF_ACC_TERRAFORM_PATH")
	artifacts, _ := filepath.Abs("../../.cache/artifacts")
	testenv.RequireFile(t, "build the artifacts first: make artifacts", filepath.Join(artifacts, tcartifacts.DefaultName("kubectl")))

	l := &tfLab{artifacts: artifacts}
	var labBin string
	l.bin, labBin = tricenterBinary(t), labBinary(t)
	l.dir = filepath.Join(t.TempDir(), "lab")
	spec := "../../examples/lab/lab.yaml"

	pluginDir, work := t.TempDir(), t.TempDir()
	timer.step("build the provider", func() error {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(pluginDir, "terraform-provider-tricenter"), "../..").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	})
	rc := filepath.Join(work, "dev.tfrc")
	tfrc := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"tricenter/tricenter\" = %q\n  }\n  direct {}\n}\n", pluginDir)
	if err := os.WriteFile(rc, []byte(tfrc), 0o644); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/lab/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "main.tf"), example, 0o644); err != nil {
		t.Fatal(err)
	}
	if l.tf, err = tfexec.NewTerraform(work, tfPath); err != nil {
		t.Fatal(err)
	}
	if err := l.tf.SetEnv(map[string]string{"TF_CLI_CONFIG_FILE": rc, "CHECKPOINT_DISABLE": "1", "PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}); err != nil {
		t.Fatal(err)
	}
	var tfOut bytes.Buffer
	l.tf.SetStdout(&tfOut)
	l.tf.SetStderr(&tfOut)

	timer.step("lab up", func() error {
		out, err := exec.CommandContext(ctx, labBin, "up", "-f", spec, "--dir", l.dir, "--artifact-dir", artifacts).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	})
	if l.rec, err = ReadRecord(l.dir); err != nil {
		t.Fatal(err)
	}
	l.vars = tfexec.VarFile(l.rec.TFVars)
	t.Cleanup(func() {
		if !l.destroyed && !l.skipDestroy {
			_ = l.tf.Destroy(context.Background(), l.vars)
		}
		start := time.Now()
		out, err := exec.Command(labBin, "down", "-f", spec, "--dir", l.dir).CombinedOutput()
		if err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		t.Logf("%-48s %v", "lab down", time.Since(start).Round(100*time.Millisecond))
		assertNothingLeft(t, l.rec)
		for _, line := range timer.lines {
			t.Log("timing: " + line)
		}
		if t.Failed() {
			t.Logf("terraform output (end):\n%s", tailString(tfOut.String(), 6000))
		}
	})
	if l.spec, err = LoadSpec(spec); err != nil {
		t.Fatal(err)
	}
	return l
}

// attributes returns the attribute values of the resource at addr.
func attributes(t *testing.T, st *tfjson.State, addr string) map[string]any {
	t.Helper()
	if st == nil || st.Values == nil || st.Values.RootModule == nil {
		t.Fatal("terraform show: no state")
	}
	for _, r := range st.Values.RootModule.Resources {
		if r.Address == addr {
			return r.AttributeValues
		}
	}
	t.Fatalf("%s is not in the state", addr)
	return nil
}

// planEmpty fails when terraform plan has changes, naming the resources
// and attributes that would change.
func planEmpty(ctx context.Context, tf *tfexec.Terraform, vars *tfexec.VarFileOption) error {
	out := filepath.Join(tf.WorkingDir(), "check.tfplan")
	changes, err := tf.Plan(ctx, vars, tfexec.Out(out))
	if err != nil {
		return err
	}
	if !changes {
		return nil
	}
	plan, err := tf.ShowPlanFile(ctx, out)
	if err != nil {
		return fmt.Errorf("the plan is not empty (and could not be read: %w)", err)
	}
	var diffs []string
	heartbeatsOnly := true
	for _, rc := range plan.ResourceChanges {
		if rc.Change == nil || rc.Change.Actions.NoOp() {
			continue
		}
		heartbeatsOnly = heartbeatsOnly && staleHeartbeatsOnly(rc.Address, rc.Change.Before)
		before, _ := rc.Change.Before.(map[string]any)
		after, _ := rc.Change.After.(map[string]any)
		var attrs []string
		for k, v := range after {
			if fmt.Sprint(before[k]) != fmt.Sprint(v) && k != "state" && k != "kubeconfig" {
				attrs = append(attrs, fmt.Sprintf("%s: %v → %v", k, before[k], v))
			}
		}
		if p, ok := before["problems"]; ok && fmt.Sprint(p) != "[]" && p != nil {
			// What the refresh observed: why the plan converges it.
			attrs = append(attrs, fmt.Sprintf("refresh found problems %v", p))
		}
		diffs = append(diffs, fmt.Sprintf("%s %v (%s)", rc.Address, rc.Change.Actions, strings.Join(attrs, "; ")))
	}
	err = fmt.Errorf("the plan is not empty: %s", strings.Join(diffs, ", "))
	if heartbeatsOnly {
		return &heartbeatLag{err}
	}
	return err
}

// heartbeatLag is a non-empty plan whose only changes are nodes whose
// refresh found nothing wrong but a kubelet heartbeat older than the
// health rule allows.
type heartbeatLag struct{ error }

func (e *heartbeatLag) Unwrap() error { return e.error }

// staleHeartbeatsOnly reports whether a change is a tricenter_node whose
// refresh problems are all stale kubelet heartbeats.
func staleHeartbeatsOnly(addr string, before any) bool {
	b, _ := before.(map[string]any)
	ps, _ := b["problems"].([]any)
	if !strings.HasPrefix(addr, "tricenter_node.") || len(ps) == 0 {
		return false
	}
	for _, p := range ps {
		if !strings.Contains(fmt.Sprint(p), "kubelet heartbeat") {
			return false
		}
	}
	return true
}

// planSettled is planEmpty on the example lab, whose VM workers are
// emulated: on a loaded host their kubelets can renew their Lease late,
// and the health rule then rightly reports them not Ready. A plan whose
// only changes are such heartbeats is taken again, 15 s later, twice at
// most; every other change fails at once.
func planSettled(ctx context.Context, t *testing.T, tf *tfexec.Terraform, vars *tfexec.VarFileOption) error {
	var err error
	for try := 1; try <= 3; try++ {
		err = planEmpty(ctx, tf, vars)
		var lag *heartbeatLag
		if !errors.As(err, &lag) || try == 3 {
			return err
		}
		t.Logf("plan %d of 3: a VM's kubelet heartbeat was late, planning again in 15 s: %v", try, err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(15 * time.Second):
		}
	}
	return err
}

// statusHealthy waits until `tricenter status` finds the cluster as
// planned (exit 0): every etcd member, API server, node and BGP session.
func statusHealthy(ctx context.Context, bin, inv, stateDir string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last []byte
	for time.Now().Before(deadline) {
		out, err := exec.CommandContext(ctx, bin, "status", "-f", inv, "--state-dir", stateDir, "--log-level", "error").CombinedOutput()
		if err == nil {
			return nil
		}
		last = out
		time.Sleep(3 * time.Second)
	}
	return fmt.Errorf("tricenter status not healthy %v after the drill:\n%s", limit, last)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// drill runs `tricenter drill center-loss` through the BMCs and checks
// its report: a real power cut, no acknowledged write lost (verified), the
// center back and healthy.
func drill(ctx context.Context, bin, inv, stateDir, center string) (*etcd.DrillReport, error) {
	cmd := exec.CommandContext(ctx, bin, "drill", "center-loss", "-f", inv, "--state-dir", stateDir, "--center", center,
		"--power", "bmc", "--kubernetes", "on", "-o", "json", "--log-level", "warn", "--yes")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	var rep etcd.DrillReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("drill: %w: %w\n%s\n%s", runErr, err, out.String(), errb.String())
	}
	if runErr != nil {
		return &rep, fmt.Errorf("drill failed: %w\n%s", runErr, errb.String())
	}
	switch {
	case !rep.PowerCut:
		return &rep, fmt.Errorf("the drill was not a power cut: %s", rep.Note)
	case !rep.Verified || rep.Lost != 0:
		return &rep, fmt.Errorf("acknowledged writes: lost %d, verified %v (%s)", rep.Lost, rep.Verified, rep.NotVerified)
	case !rep.Restored || !rep.Healthy:
		return &rep, fmt.Errorf("center %s not restored healthy: %s", center, rep.RestoreError)
	}
	for _, p := range rep.Probes {
		if p.Attempts == 0 {
			return &rep, fmt.Errorf("probe %s never ran", p.Name)
		}
	}
	return &rep, nil
}

// nodesReady waits until kubectl lists every node Ready with its center
// and rack labels.
func nodesReady(ctx context.Context, artifacts, kubeconfig string, nodes []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for {
		out, err := exec.CommandContext(ctx, filepath.Join(artifacts, tcartifacts.DefaultName("kubectl")), "--kubeconfig", kubeconfig, "get", "nodes",
			"-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.topology\\.kubernetes\\.io/zone} {.metadata.labels.tricenter\\.io/rack} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}").CombinedOutput()
		last = string(out)
		if err == nil {
			ready := map[string]bool{}
			for _, l := range strings.Split(strings.TrimSpace(last), "\n") {
				f := strings.Fields(l)
				if len(f) == 4 && f[3] == "True" && f[1] != "" && f[2] != "" {
					ready[f[0]] = true
				}
			}
			missing := 0
			for _, n := range nodes {
				if !ready[n] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes not all Ready with zone and rack after %v:\n%s", limit, last)
		}
		time.Sleep(2 * time.Second)
	}
}

// kubeletsBack waits until the kubelet of every named node, started
// again when the drill powered its server on, has itself reported the
// Node Ready: the Ready condition is True with a heartbeat after the
// power-on. (A Node keeps its last
// Ready for the grace period after its server died, and a kubelet that
// just started may report NotReady for a while: Ready alone proves
// nothing right after a drill.)
func kubeletsBack(ctx context.Context, artifacts, kubeconfig string, nodes []string, poweredOn map[string]time.Time, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, n := range nodes {
		since, ok := poweredOn[n]
		if !ok || since.IsZero() {
			return fmt.Errorf("node %s: the drill report has no power-on time for it", n)
		}
		since = since.Truncate(time.Second)
		var last string
		for {
			out, err := exec.CommandContext(ctx, filepath.Join(artifacts, tcartifacts.DefaultName("kubectl")), "--kubeconfig", kubeconfig, "get", "node", n,
				"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}`).CombinedOutput()
			last = strings.TrimSpace(string(out))
			if f := strings.Fields(last); err == nil && len(f) == 2 && f[0] == "True" {
				if at, perr := time.Parse(time.RFC3339, f[1]); perr == nil && !at.Before(since) {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %s: its kubelet did not report Ready within %v of the drill (Ready condition: %s)", n, limit, last)
			}
			time.Sleep(2 * time.Second)
		}
	}
	return nil
}

// routesOnRouter checks the TORs learnt the API VIP from every
// control-plane server and a pod CIDR from every node by BGP, and that each
// site's core router learnt them all from the TORs.
func routesOnRouter(rec *Record, s *Spec) error {
	podRange := netip.MustParsePrefix(s.Spec.Network.PodCIDR)
	check := func(name, vty string, vipPaths int) error {
		out, err := exec.Command("vtysh", "--vty_socket", vty, "-c", "show ip route bgp json").Output()
		if err != nil {
			return fmt.Errorf("%s: vtysh: %w", name, err)
		}
		var routes map[string][]struct {
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		}
		if err := json.Unmarshal(out, &routes); err != nil {
			return err
		}
		vip := routes[s.Spec.Network.APIVIP+"/32"]
		if len(vip) == 0 || len(vip[0].Nexthops) != vipPaths {
			return fmt.Errorf("%s: API VIP %s has routes %+v, want %d next hops", name, s.Spec.Network.APIVIP, vip, vipPaths)
		}
		pods := 0
		for p := range routes {
			if pp, err := netip.ParsePrefix(p); err == nil && podRange.Contains(pp.Addr()) && pp.Bits() == 24 {
				pods++
			}
		}
		if pods != len(rec.Servers) {
			return fmt.Errorf("%s: %d pod CIDRs learnt, want %d (one per node)", name, pods, len(rec.Servers))
		}
		return nil
	}
	if err := check("TORs", rec.RouterVty, 5); err != nil {
		return err
	}
	if len(rec.CoreRouters) == 0 {
		return fmt.Errorf("the lab has no core routers")
	}
	for _, c := range rec.CoreRouters {
		if err := check("core router "+c.Name, c.Vty, 1); err != nil {
			return err
		}
	}
	return nil
}
