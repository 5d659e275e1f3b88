package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// fakeFencePower is a recording fake of the BMCs (fakePower is the
// drill's): a power state per server, BMCs that do not answer, power-offs
// that fail.
type fakeFencePower struct {
	mu     sync.Mutex
	on     map[string]bool
	dead   map[string]error // State and Off fail with this
	offErr map[string]error // Off fails with this
	offs   []string         // servers Off was called for, in order
}

func newFakeFencePower() *fakeFencePower {
	return &fakeFencePower{on: map[string]bool{}, dead: map[string]error{}, offErr: map[string]error{}}
}

func (p *fakeFencePower) State(_ context.Context, h inventory.Host) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.dead[h.Name]; err != nil {
		return false, err
	}
	return p.on[h.Name], nil
}

func (p *fakeFencePower) Off(_ context.Context, h inventory.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offs = append(p.offs, h.Name)
	if err := p.dead[h.Name]; err != nil {
		return err
	}
	if err := p.offErr[h.Name]; err != nil {
		return err
	}
	p.on[h.Name] = false
	return nil
}

func (p *fakeFencePower) offCalls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.offs)
}

// fenceFixture is an engine over the three-center example with a fixed
// clock, the servers of dc3 and a fake clientset holding a Ready Node with
// a fresh Lease for every dc3 server but the last (not registered).
type fenceFixture struct {
	e     *Engine
	hosts []inventory.Host
	cs    *fake.Clientset
	now   time.Time
}

func newFenceFixture(t *testing.T) *fenceFixture {
	t.Helper()
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	cfg := testConfig(t)
	cfg.Clock = func() time.Time { return now }
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := e.centerHosts("dc3")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) < 4 {
		t.Fatalf("dc3 has %d servers, the tests need 4 or more", len(hosts))
	}
	var objs []runtime.Object
	for _, h := range hosts[:len(hosts)-1] {
		objs = append(objs, readyNode(h.Name, "boot-"+h.Name), nodeLease(h.Name, now.Add(-5*time.Second)))
	}
	// A Node of another center, which a fence of dc3 must leave alone.
	objs = append(objs, readyNode("dc1-r01-s01", "boot-dc1"), nodeLease("dc1-r01-s01", now))
	return &fenceFixture{e: e, hosts: hosts, cs: fake.NewClientset(objs...), now: now}
}

func readyNode(name, bootID string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "example.com/keep", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{BootID: bootID},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

func nodeLease(name string, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: health.LeaseNamespace},
		Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &metav1.MicroTime{Time: renewed}}}
}

// taintsOf reads the Node's taints from the clientset.
func taintsOf(t *testing.T, cs kubernetes.Interface, name string) []corev1.Taint {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.Taints
}

func outOfService(taints []corev1.Taint) bool {
	return slices.ContainsFunc(taints, func(t corev1.Taint) bool {
		return t.Key == "node.kubernetes.io/out-of-service" && t.Value == "nodeshutdown" && t.Effect == corev1.TaintEffectNoExecute
	})
}

// writes are the write actions the fake clientset saw.
func writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

func (f *fenceFixture) server(t *testing.T, rep *FenceReport, name string) FencedServer {
	t.Helper()
	for _, s := range rep.Servers {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s is not in the report %+v", name, rep.Servers)
	return FencedServer{}
}

// checkNothingTainted fails when any dc3 Node carries the taint.
func (f *fenceFixture) checkNothingTainted(t *testing.T) {
	t.Helper()
	for _, h := range f.hosts[:len(f.hosts)-1] {
		if outOfService(taintsOf(t, f.cs, h.Name)) {
			t.Errorf("%s was tainted", h.Name)
		}
	}
	if w := writes(f.cs); len(w) > 0 {
		t.Errorf("the API saw writes: %v", w)
	}
}

// Every server off: every registered Node is tainted, the Node that is not
// registered is reported so, no server is powered off and the other
// center's Node and the Nodes' other taints are untouched.
func TestFenceAllOff(t *testing.T) {
	f := newFenceFixture(t)
	pw := newFakeFencePower()
	rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw}, f.hosts, f.cs)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Fenced || rep.Refused != "" || len(rep.Servers) != len(f.hosts) {
		t.Fatalf("report %+v", rep)
	}
	last := f.hosts[len(f.hosts)-1].Name
	for _, h := range f.hosts {
		s := f.server(t, rep, h.Name)
		if s.Power != "off (BMC)" {
			t.Errorf("%s: power %q", h.Name, s.Power)
		}
		if h.Name == last {
			if s.Node != "not registered" {
				t.Errorf("%s: node %q, want not registered", h.Name, s.Node)
			}
			continue
		}
		taints := taintsOf(t, f.cs, h.Name)
		if s.Node != "tainted" || !outOfService(taints) || len(taints) != 2 {
			t.Errorf("%s: node %q, taints %+v", h.Name, s.Node, taints)
		}
	}
	if offs := pw.offCalls(); len(offs) != 0 {
		t.Errorf("powered off %v, want none", offs)
	}
	if outOfService(taintsOf(t, f.cs, "dc1-r01-s01")) {
		t.Error("a Node of dc1 was tainted")
	}
}

// A server still on is powered off once confirmed (the question lists it),
// reported "powered off now" and its Node tainted.
func TestFencePowersOffWhatIsOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    FenceOptions
	}{
		{"yes", FenceOptions{Yes: true}},
		{"confirmed", FenceOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFenceFixture(t)
			pw := newFakeFencePower()
			on := f.hosts[1].Name
			pw.on[on] = true
			var asked []string
			o := tc.o
			o.Center, o.Power = "dc3", pw
			o.Confirm = func(_ context.Context, q string) (bool, error) {
				asked = append(asked, q)
				return true, nil
			}
			rep, err := f.e.fence(context.Background(), o, f.hosts, f.cs)
			if err != nil {
				t.Fatal(err)
			}
			if o.Yes && len(asked) != 0 {
				t.Errorf("asked %q despite Yes", asked)
			}
			if !o.Yes && (len(asked) != 1 || !strings.Contains(asked[0], on) || !strings.Contains(asked[0], "1 server of center dc3")) {
				t.Errorf("asked %q, want one question naming %s", asked, on)
			}
			if offs := pw.offCalls(); !slices.Equal(offs, []string{on}) {
				t.Errorf("powered off %v, want only %s", offs, on)
			}
			s := f.server(t, rep, on)
			if s.Power != "powered off now (BMC)" || s.Node != "tainted" || !outOfService(taintsOf(t, f.cs, on)) {
				t.Errorf("%s: %+v", on, s)
			}
			if !rep.Fenced {
				t.Errorf("not fenced: %+v", rep)
			}
		})
	}
}

// A declined confirmation, or none possible (no Yes, no Confirm), changes
// nothing.
func TestFenceConfirmationRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		confirm func(context.Context, string) (bool, error)
	}{
		{"declined", func(context.Context, string) (bool, error) { return false, nil }},
		{"nobody to ask", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFenceFixture(t)
			pw := newFakeFencePower()
			pw.on[f.hosts[0].Name] = true
			rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw, Confirm: tc.confirm}, f.hosts, f.cs)
			if !errors.Is(err, ErrFenceNotConfirmed) {
				t.Fatalf("error %v, want ErrFenceNotConfirmed", err)
			}
			if rep == nil || rep.Fenced || rep.Refused == "" {
				t.Fatalf("report %+v", rep)
			}
			if offs := pw.offCalls(); len(offs) != 0 {
				t.Errorf("powered off %v", offs)
			}
			f.checkNothingTainted(t)
		})
	}
}

// A BMC that does not answer leaves its server unconfirmed: without
// AssumeDead the fence is refused before anything is asked or changed
// (a server that is on is not powered off either); with it, the server is
// fenced and reported as assumed dead.
func TestFenceUnansweredBMC(t *testing.T) {
	bmcErr := fmt.Errorf("reading power state on dc3 (BMC 10.103.0.10:623): no answer")
	t.Run("refused", func(t *testing.T) {
		f := newFenceFixture(t)
		pw := newFakeFencePower()
		dead, on := f.hosts[0].Name, f.hosts[1].Name
		pw.dead[dead] = bmcErr
		pw.on[on] = true
		asked := false
		rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw, Yes: true,
			Confirm: func(context.Context, string) (bool, error) { asked = true; return true, nil }}, f.hosts, f.cs)
		if !errors.Is(err, ErrFenceRefused) {
			t.Fatalf("error %v, want ErrFenceRefused", err)
		}
		if rep.Fenced || !strings.Contains(rep.Refused, dead) || !strings.Contains(rep.Refused, "--assume-dead") {
			t.Errorf("refused %q, want it to name %s and --assume-dead", rep.Refused, dead)
		}
		s := f.server(t, rep, dead)
		if s.Power != "not confirmed (BMC did not answer: "+bmcErr.Error()+")" || s.Node != "not tainted" {
			t.Errorf("%s: %+v", dead, s)
		}
		if s := f.server(t, rep, on); s.Power != "on (BMC)" {
			t.Errorf("%s: power %q", on, s.Power)
		}
		if asked || len(pw.offCalls()) != 0 {
			t.Errorf("asked %v, powered off %v", asked, pw.offCalls())
		}
		f.checkNothingTainted(t)
	})
	t.Run("assume dead", func(t *testing.T) {
		f := newFenceFixture(t)
		pw := newFakeFencePower()
		dead := f.hosts[0].Name
		pw.dead[dead] = bmcErr
		rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw, AssumeDead: true}, f.hosts, f.cs)
		if err != nil {
			t.Fatal(err)
		}
		s := f.server(t, rep, dead)
		if !strings.HasPrefix(s.Power, "assumed dead (BMC did not answer: ") || !strings.Contains(s.Power, "no answer") || s.Node != "tainted" {
			t.Errorf("%s: %+v", dead, s)
		}
		if !rep.Fenced || !outOfService(taintsOf(t, f.cs, dead)) {
			t.Errorf("not fenced: %+v", rep)
		}
	})
}

// A power-off that fails (or a server still on after it) refuses the
// fence: the servers powered off are reported so, nothing is tainted.
func TestFencePowerOffFailure(t *testing.T) {
	f := newFenceFixture(t)
	pw := newFakeFencePower()
	a, b := f.hosts[0].Name, f.hosts[1].Name
	pw.on[a], pw.on[b] = true, true
	pw.offErr[b] = errors.New(b + ": chassis control refused")
	rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw, Yes: true}, f.hosts, f.cs)
	if !errors.Is(err, ErrFenceRefused) || !strings.Contains(err.Error(), b) {
		t.Fatalf("error %v, want ErrFenceRefused naming %s", err, b)
	}
	if s := f.server(t, rep, a); s.Power != "powered off now (BMC)" {
		t.Errorf("%s: %+v", a, s)
	}
	if s := f.server(t, rep, b); s.Power != "on (BMC): power-off failed" || !strings.Contains(s.Error, "chassis control refused") {
		t.Errorf("%s: %+v", b, s)
	}
	f.checkNothingTainted(t)
}

// A second fence finds every Node tainted and writes nothing.
func TestFenceIdempotent(t *testing.T) {
	f := newFenceFixture(t)
	pw := newFakeFencePower()
	if _, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw}, f.hosts, f.cs); err != nil {
		t.Fatal(err)
	}
	f.cs.ClearActions()
	rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw}, f.hosts, f.cs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Servers[:len(rep.Servers)-1] {
		if s.Node != "already tainted" {
			t.Errorf("%s: node %q on the second fence", s.Name, s.Node)
		}
	}
	if w := writes(f.cs); len(w) != 0 {
		t.Errorf("the second fence wrote %v", w)
	}
	for _, h := range f.hosts[:len(f.hosts)-1] {
		if n := len(taintsOf(t, f.cs, h.Name)); n != 2 {
			t.Errorf("%s has %d taints after two fences, want 2", h.Name, n)
		}
	}
}

// A dry run asks the BMCs, reads the Nodes and says what it would do:
// nothing is asked, powered off or written.
func TestFenceDryRun(t *testing.T) {
	f := newFenceFixture(t)
	pw := newFakeFencePower()
	on := f.hosts[2].Name
	pw.on[on] = true
	rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw, DryRun: true,
		Confirm: func(context.Context, string) (bool, error) { t.Error("a dry run asked"); return false, nil }}, f.hosts, f.cs)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || !rep.Fenced {
		t.Errorf("report %+v", rep)
	}
	if s := f.server(t, rep, on); s.Power != "on (BMC): would power off" || s.Node != "would taint" {
		t.Errorf("%s: %+v", on, s)
	}
	if s := f.server(t, rep, f.hosts[len(f.hosts)-1].Name); s.Node != "not registered" {
		t.Errorf("unregistered: %+v", s)
	}
	if offs := pw.offCalls(); len(offs) != 0 {
		t.Errorf("powered off %v", offs)
	}
	f.checkNothingTainted(t)
}

func TestFenceUnknownCenter(t *testing.T) {
	f := newFenceFixture(t)
	_, err := f.e.centerHosts("dc9")
	if err == nil || !strings.Contains(err.Error(), `"dc9"`) || !strings.Contains(err.Error(), "dc1, dc2, dc3") {
		t.Fatalf("error %v, want one naming dc9 and the centers", err)
	}
	if _, err := f.e.Fence(context.Background(), FenceOptions{Center: "dc9", Power: newFakeFencePower()}); err == nil {
		t.Fatal("Fence of an unknown center succeeded")
	}
}

// On a cluster never applied there is no credential for the API: Fence
// and Unfence say so before any BMC is asked, and mint none.
func TestFenceNeverApplied(t *testing.T) {
	f := newFenceFixture(t)
	pw := newFakeFencePower()
	if _, err := f.e.Fence(context.Background(), FenceOptions{Center: "dc3", Power: pw, Yes: true}); !errors.Is(err, ErrNoPKI) {
		t.Errorf("Fence: %v, want ErrNoPKI", err)
	}
	if _, err := f.e.Unfence(context.Background(), "dc3", false); !errors.Is(err, ErrNoPKI) {
		t.Errorf("Unfence: %v, want ErrNoPKI", err)
	}
	if calls := pw.offCalls(); len(calls) != 0 {
		t.Errorf("powered off %v", calls)
	}
	if ok, err := f.e.PKIStore().HasCA(pki.KubernetesCA); ok || err != nil {
		t.Errorf("a Kubernetes CA was created (%v)", err)
	}
}

// Unfence takes the taint off the Nodes that are Ready by the health rule
// now and keeps it, saying why, on one whose heartbeat is stale and one
// whose server rebooted since its kubelet reported.
func TestUnfence(t *testing.T) {
	f := newFenceFixture(t)
	if _, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: newFakeFencePower()}, f.hosts, f.cs); err != nil {
		t.Fatal(err)
	}
	ready, stale, rebooted, untainted := f.hosts[0].Name, f.hosts[1].Name, f.hosts[2].Name, f.hosts[3].Name
	ctx := context.Background()
	if _, err := f.cs.CoordinationV1().Leases(health.LeaseNamespace).Update(ctx, nodeLease(stale, f.now.Add(-3*time.Minute)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := untaintOutOfService(ctx, f.cs, untainted); err != nil {
		t.Fatal(err)
	}
	boots := func(_ context.Context, names []string) map[string]*health.Boot {
		out := map[string]*health.Boot{}
		for _, n := range names {
			out[n] = &health.Boot{ID: "boot-" + n}
		}
		out[rebooted] = &health.Boot{ID: "a-new-boot"}
		return out
	}
	for _, dry := range []bool{true, false} {
		f.cs.ClearActions()
		rep, err := f.e.unfence(ctx, "dc3", f.hosts, dry, f.cs, boots)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Unfenced || rep.DryRun != dry || len(rep.Servers) != len(f.hosts) {
			t.Fatalf("dry run %v: report %+v", dry, rep)
		}
		got := map[string]UnfencedServer{}
		for _, s := range rep.Servers {
			got[s.Name] = s
		}
		wantReady := "untainted"
		if dry {
			wantReady = "would untaint"
		}
		if s := got[ready]; s.Node != wantReady || !s.Ready || s.Boot != "matches" {
			t.Errorf("dry run %v: %s: %+v", dry, ready, s)
		}
		if s := got[stale]; s.Node != "kept tainted" || s.Ready || !strings.Contains(s.Reason, "kubelet heartbeat 3m0s old") {
			t.Errorf("dry run %v: %s: %+v", dry, stale, s)
		}
		if s := got[rebooted]; s.Node != "kept tainted" || !strings.Contains(s.Reason, "rebooted") {
			t.Errorf("dry run %v: %s: %+v", dry, rebooted, s)
		}
		if s := got[untainted]; s.Node != "not tainted" {
			t.Errorf("dry run %v: %s: %+v", dry, untainted, s)
		}
		if s := got[f.hosts[len(f.hosts)-1].Name]; s.Node != "not registered" {
			t.Errorf("dry run %v: unregistered: %+v", dry, s)
		}
		if w := writes(f.cs); dry && len(w) != 0 {
			t.Errorf("the dry run wrote %v", w)
		}
		if outOfService(taintsOf(t, f.cs, ready)) == !dry {
			t.Errorf("dry run %v: %s taints %+v", dry, ready, taintsOf(t, f.cs, ready))
		}
		for _, n := range []string{stale, rebooted} {
			if !outOfService(taintsOf(t, f.cs, n)) {
				t.Errorf("dry run %v: %s lost the taint", dry, n)
			}
		}
	}
	if taints := taintsOf(t, f.cs, ready); len(taints) != 1 || taints[0].Key != "example.com/keep" {
		t.Errorf("%s keeps %+v, want only its own taint", ready, taints)
	}
}

// Fence and unfence against a real kube-apiserver (kubetest; no kubelet,
// so the Nodes and their Leases are written here): the taint is accepted
// as written, a second fence writes nothing, and unfence removes it only
// from the Node whose heartbeat is fresh.
func TestFenceAgainstAPIServer(t *testing.T) {
	f := newFenceFixture(t)
	cs := kubetest.Start(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := f.hosts[:3]
	fresh, stale, unregistered := hosts[0].Name, hosts[1].Name, hosts[2].Name
	for _, n := range []string{fresh, stale} {
		node := readyNode(n, "boot-"+n)
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = node.Status
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoordinationV1().Leases(health.LeaseNamespace).Create(ctx, nodeLease(fresh, f.now.Add(-2*time.Second)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoordinationV1().Leases(health.LeaseNamespace).Create(ctx, nodeLease(stale, f.now.Add(-2*time.Minute)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, want := range []string{"tainted", "already tainted"} {
		rep, err := f.e.fence(ctx, FenceOptions{Center: "dc3", Power: newFakeFencePower()}, hosts, cs)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rep.Servers {
			w := want
			if s.Name == unregistered {
				w = "not registered"
			}
			if s.Node != w {
				t.Errorf("%s: node %q, want %q", s.Name, s.Node, w)
			}
		}
	}
	for _, n := range []string{fresh, stale} {
		// The API's admission adds node.kubernetes.io/not-ready at create.
		taints := taintsOf(t, cs, n)
		if !outOfService(taints) || !slices.ContainsFunc(taints, func(t corev1.Taint) bool { return t.Key == "example.com/keep" }) ||
			len(slices.DeleteFunc(slices.Clone(taints), func(t corev1.Taint) bool { return t.Key != corev1.TaintNodeOutOfService })) != 1 {
			t.Errorf("%s taints %+v, want the out-of-service taint once beside the others", n, taints)
		}
	}

	rep, err := f.e.unfence(ctx, "dc3", hosts, false, cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unfenced || rep.Servers[0].Node != "untainted" || rep.Servers[1].Node != "kept tainted" ||
		!strings.Contains(rep.Servers[1].Reason, "heartbeat") || rep.Servers[2].Node != "not registered" {
		t.Errorf("unfence %+v", rep.Servers)
	}
	if outOfService(taintsOf(t, cs, fresh)) || !outOfService(taintsOf(t, cs, stale)) {
		t.Errorf("after unfence: %s %+v, %s %+v", fresh, taintsOf(t, cs, fresh), stale, taintsOf(t, cs, stale))
	}
}

// A server without a bmc block in the inventory cannot be asked: it is
// not confirmed, and the report says the BMC is not usable rather than
// silent.
func TestFenceServerWithoutBMC(t *testing.T) {
	f := newFenceFixture(t)
	hosts := slices.Clone(f.hosts)
	hosts[0].BMC = nil
	pool := bmc.NewPool(bmc.Options{})
	defer pool.Close(context.Background())
	pw := &BMCPowerControl{Pool: pool}
	// Only the first server: the others' BMCs (10.103.x) are not reachable here.
	rep, err := f.e.fence(context.Background(), FenceOptions{Center: "dc3", Power: pw}, hosts[:1], f.cs)
	if !errors.Is(err, ErrFenceRefused) {
		t.Fatalf("error %v, want ErrFenceRefused", err)
	}
	if s := rep.Servers[0]; !strings.HasPrefix(s.Power, "not confirmed (BMC not usable: ") || !strings.Contains(s.Power, "bmc is not set") {
		t.Errorf("%+v", s)
	}
	f.checkNothingTainted(t)
}
