package controlplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func testIPs() *inventory.IPPlan {
	return &inventory.IPPlan{
		KubernetesServiceIP: netip.MustParseAddr("198.19.96.1"),
		ClusterDNSIP:        netip.MustParseAddr("198.19.96.10"),
		APIVIP:              netip.MustParseAddr("198.19.120.10"),
	}
}

func testOptions(t *testing.T) Options {
	c := &inventory.Cluster{}
	c.Metadata.Name = "lab"
	c.Spec.Network = inventory.Network{ServiceCIDR: "198.19.96.0/20", PodCIDR: "198.19.128.0/17", ClusterDomain: "cluster.local"}
	p := &inventory.Placement{ControlPlane: []inventory.Member{testServer}}
	p.Etcd.Members = []inventory.Member{testServer}
	bins := map[string]string{}
	for _, b := range Binaries() {
		bins[b] = "/nonexistent/" + b
	}
	return Options{Cluster: c, Placement: p, IPs: testIPs(), PKI: &pki.Store{Dir: t.TempDir()}, Binaries: bins}
}

func TestPhasesInOrderWithStableIDs(t *testing.T) {
	ps, err := Phases(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		ip, ok := p.(phase.Identified)
		if !ok {
			t.Fatalf("phase %q has no ID", p.Title())
		}
		ids = append(ids, ip.PhaseID())
		if !strings.HasPrefix(ip.PhaseID(), "control-plane/") || p.Title() == "" {
			t.Errorf("phase %q: ID %q", p.Title(), ip.PhaseID())
		}
	}
	if want := []string{"control-plane/preflight", "control-plane/certificates",
		"control-plane/binaries", "control-plane/configuration", "control-plane/start"}; !slices.Equal(ids, want) {
		t.Fatalf("phase IDs %v, want %v (stable: the workflow and users' --skip-phases name them)", ids, want)
	}
}

func TestPhasesValidateOptions(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   string
	}{
		{"no cluster", func(o *Options) { o.Cluster = nil }, "needs Cluster"},
		{"no PKI", func(o *Options) { o.PKI = nil }, "needs Cluster"},
		{"no control plane", func(o *Options) { o.Placement.ControlPlane = nil }, "no control-plane server"},
		{"no etcd", func(o *Options) { o.Placement.Etcd.Members = nil }, "no etcd member"},
		{"no kubectl", func(o *Options) { delete(o.Binaries, Kubectl) }, "no local path for kubectl"},
		{"bad service CIDR", func(o *Options) { o.Cluster.Spec.Network.ServiceCIDR = "x" }, "serviceCIDR"},
		{"no domain", func(o *Options) { o.Cluster.Spec.Network.ClusterDomain = "" }, "clusterDomain"},
		{"bad address", func(o *Options) { o.Placement.ControlPlane = []inventory.Member{{Name: "a", Address: "a"}} }, "address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			tc.mutate(&o)
			_, err := Phases(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestUnitActions(t *testing.T) {
	running := UnitState{Active: true, Enabled: true}
	all := func(u UnitState) *Facts {
		return &Facts{Units: map[string]UnitState{APIServer: u, ControllerManager: u, Scheduler: u}}
	}
	str := func(as []unitAction) string {
		var s []string
		for _, a := range as {
			s = append(s, a.verb+" "+a.component)
		}
		return strings.Join(s, ", ")
	}
	tests := []struct {
		name    string
		facts   *Facts
		changed map[string]bool
		want    string
	}{
		{"converged: nothing", all(running), nil, ""},
		{"fresh server: enable and start all", all(UnitState{}), nil,
			"enable kube-apiserver, start kube-apiserver, enable kube-controller-manager, start kube-controller-manager, enable kube-scheduler, start kube-scheduler"},
		{"fresh server with changes: start, not restart", all(UnitState{}), map[string]bool{APIServer: true},
			"enable kube-apiserver, start kube-apiserver, enable kube-controller-manager, start kube-controller-manager, enable kube-scheduler, start kube-scheduler"},
		{"only the changed one restarts", all(running), map[string]bool{Scheduler: true}, "restart kube-scheduler"},
		{"a stopped one starts", &Facts{Units: map[string]UnitState{APIServer: running, ControllerManager: {Enabled: true}, Scheduler: running}},
			nil, "start kube-controller-manager"},
		{"a disabled running one is enabled, not restarted", &Facts{Units: map[string]UnitState{APIServer: {Active: true}, ControllerManager: running, Scheduler: running}},
			nil, "enable kube-apiserver"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := str(unitActions(tc.facts, tc.changed)); got != tc.want {
				t.Fatalf("actions %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStartRollsOnlyRestarts: start brings up together the servers it
// only enables or starts units on (they serve nothing yet), and rolls one
// at a time only the servers where a running component restarts.
func TestStartRollsOnlyRestarts(t *testing.T) {
	running := UnitState{Active: true, Enabled: true}
	all := func(u UnitState) *Facts {
		return &Facts{Units: map[string]UnitState{APIServer: u, ControllerManager: u, Scheduler: u}}
	}
	r := &run{hosts: map[string]*hostState{
		"fresh":     {facts: all(UnitState{}), changed: map[string]bool{APIServer: true}},
		"converged": {facts: all(running), changed: map[string]bool{}},
		"stopped":   {facts: &Facts{Units: map[string]UnitState{APIServer: running, ControllerManager: {Enabled: true}, Scheduler: running}}, changed: map[string]bool{}},
		"changed":   {facts: all(running), changed: map[string]bool{Scheduler: true}},
	}}
	for name, want := range map[string]bool{"fresh": false, "converged": false, "stopped": false, "changed": true} {
		h := &phase.Host{Host: inventory.Host{Server: &inventory.Server{Name: name}}}
		if got := r.restarts(h); got != want {
			t.Errorf("%s: restarts = %v, want %v (one at a time only when a running component restarts)", name, got, want)
		}
	}
}

func TestParseFacts(t *testing.T) {
	before := time.Unix(1000, 0)
	after := before.Add(100 * time.Millisecond)
	tests := []struct {
		name  string
		out   string
		units map[string]UnitState
		busy  []string
		disk  int64
		skew  time.Duration
		bins  bool
	}{
		{"running server", "now=1000.05\nunit kube-apiserver active enabled\nunit kube-controller-manager active enabled\n" +
			"unit kube-scheduler activating disabled\nlisteners=kube-apiserver,kube-controller,kube-scheduler,\navail=2147483648\nbinaries=1\n",
			map[string]UnitState{APIServer: {true, true}, ControllerManager: {true, true}, Scheduler: {false, false}},
			nil, 2 << 30, 0, true},
		{"fresh server with a foreign listener and a slow clock", "now=997.5\nunit kube-apiserver inactive\nunit kube-controller-manager\n" +
			"listeners=haproxy,\navail=1048576\nbinaries=0\n",
			map[string]UnitState{APIServer: {}, ControllerManager: {}},
			[]string{"haproxy"}, 1 << 20, 2500 * time.Millisecond, false},
		{"clock ahead", "now=1003.1\n", map[string]UnitState{}, nil, 0, 3 * time.Second, false},
		{"garbage", "x\n=\nunit\n", map[string]UnitState{}, nil, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := parseFacts(tc.out, before, after)
			if fmt.Sprint(f.Units) != fmt.Sprint(tc.units) || !slices.Equal(f.PortsBusy, tc.busy) ||
				f.FreeDisk != tc.disk || f.Skew.Round(time.Millisecond) != tc.skew || f.HasBinaries != tc.bins {
				t.Fatalf("facts %+v, want units %v busy %v disk %d skew %v binaries %v", f, tc.units, tc.busy, tc.disk, tc.skew, tc.bins)
			}
		})
	}
}

func FuzzParseFacts(f *testing.F) {
	f.Add("now=1000.5\nunit kube-apiserver active enabled\nlisteners=a,b,\navail=12\n")
	f.Add("now=NaN\nnow=1e300\n")
	f.Fuzz(func(t *testing.T, out string) {
		fa := parseFacts(out, time.Unix(1000, 0), time.Unix(1001, 0))
		if fa.Skew < 0 {
			t.Fatalf("negative skew %v", fa.Skew)
		}
		for _, p := range fa.PortsBusy {
			if p == "" || slices.Contains(ourListeners, p) {
				t.Fatalf("busy port holder %q", p)
			}
		}
	})
}

func TestCheckFacts(t *testing.T) {
	r, err := newRun(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		facts     Facts
		hasBinary bool
		want      []string
	}{
		{"fine", Facts{FreeDisk: 2 << 30, Skew: time.Second}, false, nil},
		{"foreign listener", Facts{PortsBusy: []string{"haproxy"}, FreeDisk: 2 << 30}, false, []string{"in use by haproxy"}},
		{"clock", Facts{Skew: 3 * time.Second, FreeDisk: 2 << 30}, false, []string{"clock is 3s off", "fix NTP"}},
		{"disk", Facts{FreeDisk: 100 << 20}, false, []string{"only 100 MiB free", "1024 MiB needed"}},
		{"disk with binaries already there", Facts{FreeDisk: 100 << 20}, true, nil},
		{"disk unknown", Facts{}, false, nil},
		{"everything", Facts{PortsBusy: []string{"nginx"}, Skew: time.Minute, FreeDisk: 1}, false,
			[]string{"nginx", "clock", "MiB free"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.checkFacts(&tc.facts, tc.hasBinary)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
