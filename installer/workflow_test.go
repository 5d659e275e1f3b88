package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestWorkflowIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	lastComp := -1
	for _, p := range Workflow() {
		if seen[p.ID] {
			t.Errorf("phase %s listed twice", p.ID)
		}
		seen[p.ID] = true
		if p.Description == "" {
			t.Errorf("phase %s has no description", p.ID)
		}
		for _, n := range p.Needs {
			if !seen[n] {
				t.Errorf("phase %s needs %s, which does not come before it", p.ID, n)
			}
		}
		// Components come in apply order, preflight first.
		idx := slices.Index(Components(), p.Component)
		if p.Component == Preflight {
			idx = -1
		} else if idx < 0 {
			t.Errorf("phase %s: unknown component %s", p.ID, p.Component)
		}
		if idx < lastComp {
			t.Errorf("phase %s (%s) comes after a later component's phase", p.ID, p.Component)
		}
		lastComp = idx
		if (p.Component == Gates) != (p.Verifies != "") {
			t.Errorf("phase %s: only gates verify a component", p.ID)
		}
	}
	if got := PhaseIDs(); len(got) != len(Workflow()) || got[0] != PhaseReachable {
		t.Errorf("PhaseIDs = %v", got)
	}
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		name       string
		only, skip []string
		has, lacks []string
		err        string
	}{
		{name: "everything", has: []string{etcd.PhaseHealth, PhaseBGPAgent, GateDataplane, addons.IDNodeLabels}},
		{name: "a component brings its gate", only: []string{"etcd"},
			has: []string{etcd.PhasePreflight, etcd.PhaseHealth, GateEtcd, PhaseAuthorities}, lacks: []string{PhaseBGPAgent, GateBGP}},
		{name: "a phase brings what it needs", only: []string{"etcd/install"},
			has: []string{etcd.PhasePreflight, etcd.PhaseDiscover, etcd.PhaseInstall}, lacks: []string{etcd.PhaseStart, GateEtcd}},
		{name: "comma lists", only: []string{"bgp,gates/bgp"}, has: []string{PhaseBGPAgent, GateBGP}, lacks: []string{GateNodes}},
		{name: "skip a component and its gate", skip: []string{"nodes", "addons"},
			has: []string{etcd.PhaseHealth, GateControlPlane}, lacks: []string{"node/kubelet", GateNodes, GateDataplane, addons.IDCoreDNS}},
		{name: "skip one gate", skip: []string{GateDataplane}, has: []string{GateNodes}, lacks: []string{GateDataplane}},
		{name: "gates only", only: []string{"gates"}, has: []string{GateEtcd, GateDataplane}, lacks: []string{etcd.PhaseInstall}},
		{name: "unknown", only: []string{"kubelet"}, err: `unknown component or phase "kubelet"`},
		{name: "preflight is not selectable", skip: []string{PhaseAuthorities}, err: "runs on every apply"},
		{name: "skipping what a phase needs", skip: []string{etcd.PhaseDiscover}, err: "etcd/install needs etcd/discover"},
		{name: "nothing left", only: []string{"bgp"}, skip: []string{"bgp"}, err: "no phase left"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Select(tc.only, tc.skip)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.has {
				if !s.Has(id) {
					t.Errorf("%s not selected: %v", id, s.IDs())
				}
			}
			for _, id := range tc.lacks {
				if s.Has(id) {
					t.Errorf("%s selected: %v", id, s.IDs())
				}
			}
		})
	}
}

// workflowLab is a plan's world: three sshd servers (one per center, each
// etcd member, control-plane server and node) and an artifact directory of
// small stand-ins with their manifest. A plan only reads the servers.
func workflowLab(t *testing.T) *Engine {
	t.Helper()
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3})
	fakeCgroupV1(t, l)
	c := l.Cluster(sshtest.ClusterOptions{})
	c.Spec.Kubernetes.FailCgroupV1 = new(bool) // false: the servers are on cgroup v1
	dir := t.TempDir()
	var sums strings.Builder
	kv, ev := c.Spec.Kubernetes.Version, c.Spec.Etcd.Version
	for _, n := range []string{artifacts.Versioned("etcd", ev), artifacts.Versioned("etcdctl", ev),
		artifacts.Versioned("kube-apiserver", kv), artifacts.Versioned("kube-controller-manager", kv),
		artifacts.Versioned("kube-scheduler", kv), artifacts.Versioned("kubectl", kv),
		artifacts.Versioned("kubelet", kv), artifacts.Versioned("kube-proxy", kv),
		"pause.oci.tar", "coredns.oci.tar", "probe.oci.tar", "lb.oci.tar", "tricenter-bgp",
		"containerd", "containerd-shim-runc-v2", "ctr", "runc", "bridge", "host-local", "portmap", "loopback"} {
		b := []byte("stand-in for " + n + " (tests only)\n")
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o755); err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(b)
		sums.WriteString(hex.EncodeToString(d[:]) + "  " + n + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Spec.Kubernetes.ArtifactDir = dir
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Store: st, AgentBinary: filepath.Join(dir, "tricenter-bgp"), Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// fakeCgroupV1 makes the servers report cgroup v1 to node/preflight
// (the sshd hosts share this machine's /sys/fs/cgroup, which may be either):
// a stand-in stat answers its query with tmpfs and runs the real stat
// otherwise.
func fakeCgroupV1(t *testing.T, l *sshtest.Lab) {
	t.Helper()
	l.FakeCommands(t, map[string]string{"stat": `#!/bin/sh
# fake stat (tests only): /sys/fs/cgroup is cgroup v1
if [ "$*" = "-fc %T /sys/fs/cgroup" ]; then echo tmpfs; exit 0; fi
exec /usr/bin/stat "$@"
`})
}

func runIDs(r *Result) []string {
	var out []string
	for _, p := range r.Phases {
		out = append(out, p.ID)
	}
	return out
}

// TestPlanRunsTheWorkflow: a plan over real sshd servers builds every
// component's phases, and they carry exactly the workflow's IDs, in its
// order; --only and --skip-phases pick from the same list.
func TestPlanRunsTheWorkflow(t *testing.T) {
	e := workflowLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	res, err := e.Plan(ctx, Options{})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if got, want := runIDs(res), PhaseIDs(); !slices.Equal(got, want) {
		t.Fatalf("the plan ran phases\n  %v\nthe workflow lists\n  %v", got, want)
	}
	// It is a plan of a first install: every server would get etcd or the
	// node agents, and nothing ran for real.
	if len(res.Changes) != 3 {
		t.Errorf("changes on %d servers, want 3: %v", len(res.Changes), res.Hosts())
	}
	// Everything is pending: an apply relying on this plan walks it all.
	if want := []Component{Etcd, BGP, ControlPlane, Nodes, Addons}; !slices.Equal(res.Pending, want) {
		t.Errorf("a first install's plan has pending %v, want %v", res.Pending, want)
	}
	for _, p := range res.Phases {
		if strings.HasPrefix(p.ID, "gates/") && p.Ran {
			t.Errorf("gate %s ran in a plan", p.ID)
		}
		if p.Error != "" {
			t.Errorf("phase %s: %s", p.ID, p.Error)
		}
	}
	if !res.DryRun || len(res.Gates) != 0 {
		t.Errorf("dry run %v, gates %v", res.DryRun, res.Gates)
	}

	res, err = e.Plan(ctx, Options{Only: []string{"etcd/install"}})
	if err != nil {
		t.Fatalf("plan --only etcd/install: %v", err)
	}
	want := []string{PhaseReachable, PhaseAuthorities, PhaseCertificates, etcd.PhasePreflight, etcd.PhaseDiscover, etcd.PhaseInstall}
	if got := runIDs(res); !slices.Equal(got, want) {
		t.Errorf("--only etcd/install ran %v, want %v", got, want)
	}
	for h, cs := range res.Changes {
		for _, c := range cs {
			if strings.Contains(c, "restart") || strings.Contains(c, "kubelet") {
				t.Errorf("%s: %q is not etcd/install's", h, c)
			}
		}
	}

	res, err = e.Plan(ctx, Options{Skip: []string{"nodes", "addons", etcd.PhaseRetire}})
	if err != nil {
		t.Fatalf("plan --skip-phases: %v", err)
	}
	for _, id := range runIDs(res) {
		if strings.HasPrefix(id, "node/") || strings.HasPrefix(id, "addons/") || id == GateNodes || id == GateDataplane || id == etcd.PhaseRetire {
			t.Errorf("skipped phase %s ran", id)
		}
	}
	if !slices.Contains(runIDs(res), controlplaneStart) {
		t.Errorf("control-plane/start missing from %v", runIDs(res))
	}

	if _, err := e.Plan(ctx, Options{Skip: []string{etcd.PhaseDiscover}}); err == nil || !strings.Contains(err.Error(), "needs etcd/discover") {
		t.Errorf("skipping etcd/discover: %v", err)
	}

	// node/preflight refuses servers on cgroup v1 unless the inventory
	// allows it, naming each server and the field; --only node/kubelet
	// brings it along.
	if _, err := e.Plan(ctx, Options{Skip: []string{"node/preflight"}}); err == nil || !strings.Contains(err.Error(), "needs node/preflight") {
		t.Errorf("skipping node/preflight: %v", err)
	}
	e.cfg.Cluster.Spec.Kubernetes.FailCgroupV1 = nil
	_, err = e.Plan(ctx, Options{Only: []string{"node/kubelet"}})
	if err == nil {
		t.Fatal("a plan on cgroup v1 servers without failCgroupV1: false passed node/preflight")
	}
	for _, h := range e.cfg.Cluster.Hosts() {
		if !strings.Contains(err.Error(), h.Name+": ") {
			t.Errorf("the refusal does not name %s: %v", h.Name, err)
		}
	}
	t.Logf("refused as expected: %v", err)
	if !strings.Contains(err.Error(), "spec.kubernetes.failCgroupV1: false") || !strings.Contains(err.Error(), "cgroup v1") {
		t.Errorf("the refusal does not name the field: %v", err)
	}
}

const controlplaneStart = "control-plane/start"

// Options.Except (the provider's node_servers) leaves those servers'
// per-node work out and keeps every other server.
func TestCoveredServers(t *testing.T) {
	c := &inventory.Cluster{}
	c.Spec.Sites = []inventory.Site{{Name: "a"}}
	c.Spec.Centers = []inventory.Center{{Name: "dc1", Site: "a"}}
	c.Spec.Racks = []inventory.Rack{{Name: "r1", Center: "dc1",
		Servers: []inventory.Server{{Name: "s01"}, {Name: "w01"}, {Name: "w02"}}}}
	e := &Engine{cfg: Config{Cluster: c}}
	if got := e.covered(nil, nil); got != nil {
		t.Errorf("no except: %v, want nil (every server)", got)
	}
	if got := e.covered(nil, []string{"w02"}); !slices.Equal(got, []string{"s01", "w01"}) {
		t.Errorf("except w02: %v", got)
	}
	if got := e.covered([]string{"w01", "w02"}, []string{"w02"}); !slices.Equal(got, []string{"w01"}) {
		t.Errorf("servers w01,w02 except w02: %v", got)
	}
	if got := e.covered([]string{"w02"}, []string{"w02"}); got == nil || len(got) != 0 {
		t.Errorf("all excepted: %#v, want empty (not nil)", got)
	}
}
