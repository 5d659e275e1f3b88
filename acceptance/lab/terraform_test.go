//go:build labacc

// The lab's Terraform acceptance test (make testacc): examples/lab/main.tf
// against the whole example lab, VMs included. It takes a quarter of an
// hour and most of the machine, so it runs on its own, not in make test.

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/libvirt"
	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/provider"
)

// stepTimer records how long each step of the test took.
type stepTimer struct {
	t     *testing.T
	name  string
	start time.Time
	lines []string
}

func (s *stepTimer) begin(name string) func() {
	return func() { s.name, s.start = name, time.Now() }
}

func (s *stepTimer) done() {
	line := fmt.Sprintf("%-44s %v", s.name, time.Since(s.start).Round(100*time.Millisecond))
	s.lines = append(s.lines, line)
	s.t.Log(line)
}

func (s *stepTimer) end() resource.TestCheckFunc {
	return func(*terraform.State) error { s.done(); return nil }
}

// TestLabTerraform: lab up, then examples/lab/main.tf: every server powered
// on through its BMC, SSH through the jump hosts, etcd across the centers,
// control plane, nodes Ready, BGP routes on the lab router, kubectl with the
// output kubeconfig; then the loss of dc1 (a libvirt VM among its servers)
// by powering every server of it off through its BMC, with writes and the
// API probed; power back on and the center rejoins; destroy; lab down
// leaves nothing.
func TestLabTerraform(t *testing.T) {
	needLab(t)
	testenv.Need(t, libvirt.Available())
	tf, err := exec.LookPath("terraform")
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		tf, err = p, nil
	}
	testenv.Require(t, "terraform on PATH (Terraform >= 1.11) or TF_ACC_TERRAFORM_PATH", err == nil)
	t.Setenv("TF_ACC_TERRAFORM_PATH", tf)
	t.Setenv("TF_ACC", "1")
	artifacts, _ := filepath.Abs("../../.cache/artifacts")
	testenv.RequireFile(t, "build the artifacts first: make artifacts", filepath.Join(artifacts, "kubectl"))

	timer := &stepTimer{t: t}
	bin := tricenterBinary(t)
	dir := filepath.Join(t.TempDir(), "lab")
	spec := "../../examples/lab/lab.yaml"
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()

	timer.begin("lab up")()
	run(t, bin, "lab", "up", "-f", spec, "--dir", dir, "--artifact-dir", artifacts)
	timer.done()
	rec, err := ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		start := time.Now()
		out, err := exec.Command(bin, "lab", "down", "-f", spec, "--dir", dir).CombinedOutput()
		if err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		t.Logf("%-44s %v", "lab down", time.Since(start).Round(100*time.Millisecond))
		assertNothingLeft(t, rec)
		for _, l := range timer.lines {
			t.Log("timing: " + l)
		}
	})
	s, err := LoadSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	var workers []config.Variable
	for _, w := range []string{"dc1-r01-w01", "dc2-r01-w01", "dc3-r01-w01"} {
		workers = append(workers, config.StringVariable(w))
	}
	vars := config.Variables{
		"inventory_file": config.StringVariable(rec.Inventory),
		"workers":        config.SetVariable(workers...),
	}
	kubeconfig := filepath.Join(t.TempDir(), "admin.conf")
	stateDir := filepath.Join(t.TempDir(), "state")
	var allNodes []string
	for _, sv := range rec.Servers {
		allNodes = append(allNodes, sv.Name)
	}
	const cluster = "tricenter_cluster.lab"

	example := exampleConfig(t)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error){
			"tricenter": providerserver.NewProtocol6WithError(provider.New("test")()),
		},
		Steps: []resource.TestStep{
			{
				PreConfig:       timer.begin("terraform apply (power on → cluster → nodes)"),
				Config:          example,
				ConfigVariables: vars,
				Check: resource.ComposeAggregateTestCheckFunc(
					timer.end(),
					resource.TestCheckResourceAttr(cluster, "healthy", "true"),
					resource.TestCheckResourceAttr(cluster, "etcd_members.%", "5"),
					resource.TestCheckResourceAttr(cluster, "api_server_url", "https://"+s.Spec.Network.APIVIP+":6443"),
					resource.TestCheckResourceAttr("tricenter_server.lab[\"dc1-r01-w01\"]", "observed_power_state", "on"),
					resource.TestCheckResourceAttr("tricenter_server.lab[\"dc1-r01-w01\"]", "fru_serial", "LAB-dc1-r01-w01"),
					resource.TestCheckResourceAttr("tricenter_server.lab[\"dc1-r01-w01\"]", "fru_model", "lab libvirt"),
					resource.TestCheckResourceAttr("tricenter_node.worker[\"dc2-r01-w01\"]", "ready", "true"),
					func(st *terraform.State) error {
						a := st.RootModule().Resources[cluster].Primary.Attributes
						if err := os.WriteFile(kubeconfig, []byte(a["kubeconfig"]), 0o600); err != nil {
							return err
						}
						var files map[string]string
						if err := json.Unmarshal([]byte(a["state"]), &files); err != nil {
							return fmt.Errorf("engine state: %w", err)
						}
						if err := state.Restore(filepath.Join(stateDir, s.Metadata.Name), files); err != nil {
							return err
						}
						start := time.Now()
						if err := nodesReady(ctx, artifacts, kubeconfig, allNodes, 3*time.Minute); err != nil {
							return err
						}
						t.Logf("%-44s %v", "kubectl: every node Ready", time.Since(start).Round(100*time.Millisecond))
						return routesOnRouter(rec, s)
					},
				),
			},
			{
				// The loss of dc1 through its BMCs, then the same config:
				// nothing to change, the cluster healthy, every node Ready.
				PreConfig: func() {
					timer.begin("center-loss drill dc1 through the BMCs")()
					rep, err := drill(ctx, bin, rec.Inventory, stateDir, "dc1")
					timer.done()
					if err != nil {
						t.Fatal(err)
					}
					t.Logf("drill dc1: power-off %v, writes resumed %v after the loss, longest gap %v, %d acknowledged, %d lost (verified %v), healthy %v after power-on",
						rep.PowerOffTook, rep.ResumedAfter, rep.WriteGap, rep.Acknowledged, rep.Lost, rep.Verified, rep.RestoredHealthy)
					for _, p := range rep.Probes {
						t.Logf("drill probe %s: %d checks, %d failed, longest gap %v", p.Name, p.Attempts, p.Failures, p.MaxGap)
					}
					timer.begin("rejoin: dc1's kubelets back, every node Ready")()
					var dc1 []string
					for _, sv := range rec.Servers {
						if sv.Center == "dc1" {
							dc1 = append(dc1, sv.Name)
						}
					}
					if err := kubeletsBack(ctx, artifacts, kubeconfig, dc1, time.Now(), 5*time.Minute); err != nil {
						t.Fatal(err)
					}
					if err := nodesReady(ctx, artifacts, kubeconfig, allNodes, 5*time.Minute); err != nil {
						t.Fatal(err)
					}
					timer.done()
					timer.begin("terraform apply after the drill (no-op)")()
				},
				Config:          example,
				ConfigVariables: vars,
				Check: resource.ComposeAggregateTestCheckFunc(
					timer.end(),
					resource.TestCheckResourceAttr(cluster, "healthy", "true"),
					resource.TestCheckResourceAttr(cluster, "problems.#", "0"),
					resource.TestCheckResourceAttr("tricenter_server.lab[\"dc1-r01-s01\"]", "observed_power_state", "on"),
				),
			},
		},
		CheckDestroy: func(*terraform.State) error {
			// destroy powered every server off through its BMC.
			pw, err := os.ReadFile(Paths{Dir: dir}.BMCPassword())
			if err != nil {
				return err
			}
			pool := bmc.NewPool(bmc.Options{})
			defer pool.Close(context.Background())
			var targets []bmc.Target
			for _, sv := range rec.Servers {
				targets = append(targets, bmc.Target{Server: sv.Name, Address: sv.BMC, Port: 623, User: BMCUser,
					Password: strings.TrimSpace(string(pw)), CipherSuites: []int{3}})
			}
			for _, r := range pool.Run(ctx, targets, bmc.Request{Op: bmc.OpStatus}) {
				if r.Err != nil || r.Power != bmc.PowerOff {
					return fmt.Errorf("after destroy server %s is %q (%v), want off", r.Server, r.Power, r.Err)
				}
			}
			return nil
		},
	})
}

// exampleConfig is examples/lab/main.tf without its terraform block: the
// test serves the provider in-process (terraform-plugin-testing names it
// by its short name), while the example pins its registry source.
func exampleConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/lab/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "terraform {")
	j := strings.Index(s, "\nvariable ")
	if i < 0 || j < i {
		t.Fatal("examples/lab/main.tf: no terraform block before the variables")
	}
	return s[:i] + s[j:]
}

// drill runs `tricenter drill center-loss` through the BMCs and checks
// its report: a real power cut, no acknowledged write lost (verified), the
// center back and healthy.
func drill(ctx context.Context, bin, inv, stateDir, center string) (*etcd.DrillReport, error) {
	cmd := exec.CommandContext(ctx, bin, "drill", "center-loss", "-f", inv, "--state-dir", stateDir, "--center", center,
		"--power", "bmc", "--kubernetes", "on", "-o", "json", "--log-level", "warn")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	var rep etcd.DrillReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("drill: %v: %w\n%s\n%s", runErr, err, out.String(), errb.String())
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
		out, err := exec.CommandContext(ctx, filepath.Join(artifacts, "kubectl"), "--kubeconfig", kubeconfig, "get", "nodes",
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

// kubeletsBack waits until the kubelet of every named node renewed its
// lease after since: the servers booted again and their kubelets rejoined
// (a Node stays Ready for the grace period after its server died, so
// Ready alone proves nothing right after a drill).
func kubeletsBack(ctx context.Context, artifacts, kubeconfig string, nodes []string, since time.Time, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, n := range nodes {
		for {
			out, err := exec.CommandContext(ctx, filepath.Join(artifacts, "kubectl"), "--kubeconfig", kubeconfig, "-n", "kube-node-lease",
				"get", "lease", n, "-o", "jsonpath={.spec.renewTime}").CombinedOutput()
			if err == nil {
				if at, perr := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(out))); perr == nil && at.After(since) {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %s: kubelet did not renew its lease within %v of the drill: %s", n, limit, out)
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
