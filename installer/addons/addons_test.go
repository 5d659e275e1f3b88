package addons

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
	}
}

func options(t *testing.T) Options {
	t.Helper()
	c, _, err := inventory.Load(filepath.Join("testdata", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if res := c.Validate(nil); !res.OK() {
		t.Fatal(res.Err())
	}
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Cluster: c, IPs: ips}
}

func registeredNodes(names ...string) []runtime.Object {
	var out []runtime.Object
	for _, n := range names {
		out = append(out, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n,
			Labels: map[string]string{"kubernetes.io/hostname": n}}})
	}
	return out
}

func TestCoreDNSGolden(t *testing.T) {
	o := options(t)
	x, err := CoreDNS(o)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, obj := range []any{x.ServiceAccount, x.ClusterRole, x.ClusterRoleBinding, x.ConfigMap, x.Deployment, x.PDB, x.Service} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, "---\n"...), b...)
	}
	golden(t, "coredns.yaml", all)
	golden(t, "Corefile-forward", []byte(RenderCorefile("cluster.local", []string{"198.18.0.53", "/etc/resolv.conf"})))
}

func TestApplyCreatesThenChangesNothing(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	o.FRU = map[string]FRU{"w1": {Serial: "SN 4711/ab ", Model: "PowerEdge R650"}}
	cs := newFakeAPI(t, registeredNodes("cp1", "w1", "cp2", "cp3")...)
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"created ServiceAccount kube-system/coredns", "created ClusterRole system:coredns",
		"created ClusterRoleBinding system:coredns", "created ConfigMap kube-system/coredns",
		"created Deployment kube-system/coredns", "created PodDisruptionBudget kube-system/coredns",
		"created Service kube-system/kube-dns", "tainted Node cp1 (node-role.kubernetes.io/control-plane:NoSchedule)",
		"tainted Node cp3 (node-role.kubernetes.io/control-plane:NoSchedule)",
	} {
		if !slices.Contains(changed, want) {
			t.Errorf("changes lack %q: %q", want, changed)
		}
	}
	if slices.Contains(changed, "tainted Node cp2 (node-role.kubernetes.io/control-plane:NoSchedule)") {
		t.Error("cp2 (control plane and worker) was tainted")
	}

	svc, err := cs.CoreV1().Services(Namespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != o.IPs.ClusterDNSIP.String() {
		t.Errorf("kube-dns at %s, want %s", svc.Spec.ClusterIP, o.IPs.ClusterDNSIP)
	}
	d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if *d.Spec.Replicas != 2 || c.Image != DefaultCoreDNSImage || c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("deployment: replicas %d image %s pull %s", *d.Spec.Replicas, c.Image, c.ImagePullPolicy)
	}
	if tsc := d.Spec.Template.Spec.TopologySpreadConstraints; len(tsc) != 1 || tsc[0].TopologyKey != LabelZone {
		t.Errorf("deployment not spread by zone: %+v", tsc)
	}
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cf := cm.Data["Corefile"]; !strings.Contains(cf, "kubernetes cluster.local in-addr.arpa") || strings.Contains(cf, "forward") {
		t.Errorf("Corefile:\n%s", cf)
	}

	w1, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		LabelRegion: "site-a", LabelZone: "dc1", LabelRack: "dc1-r01", LabelSerial: "SN_4711_ab",
		LabelModel: "PowerEdge_R650", "node-role.kubernetes.io/worker": "", "example.com/gpu": "none",
		"kubernetes.io/hostname": "w1",
	} {
		if got, ok := w1.Labels[k]; !ok || got != v {
			t.Errorf("w1 label %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := w1.Labels[LabelControlPlane]; ok {
		t.Error("worker w1 carries the control-plane role label")
	}
	cp3, err := cs.CoreV1().Nodes().Get(ctx, "cp3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cp3.Labels[LabelControlPlane]; !ok || cp3.Labels[LabelZone] != "dc3" || cp3.Labels[LabelRegion] != "site-b" {
		t.Errorf("cp3 labels %v", cp3.Labels)
	}
	if len(cp3.Spec.Taints) != 1 || !cp3.Spec.Taints[0].MatchTaint(&TaintControlPlane) {
		t.Errorf("cp3 taints %v", cp3.Spec.Taints)
	}

	// A second apply applies every object again, changes nothing and
	// reports nothing.
	from := len(cs.Actions())
	checkQuietApply(t, ctx, cs, o, "the first")
	if n := applies(cs, from); n != 7+4 {
		t.Errorf("re-apply made %d server-side applies, want 11 (7 objects, 4 Nodes' labels)", n)
	}

	// Forwarding on: only the ConfigMap changes.
	o.Forward = []string{"198.18.0.53"}
	fw, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fw, []string{"updated ConfigMap kube-system/coredns"}) {
		t.Fatalf("enabling forwarding changed %q", fw)
	}
	cm, _ = cs.CoreV1().ConfigMaps(Namespace).Get(ctx, CoreDNSName, metav1.GetOptions{})
	if !strings.Contains(cm.Data["Corefile"], "forward . 198.18.0.53 {") {
		t.Errorf("Corefile without forward:\n%s", cm.Data["Corefile"])
	}
}

func TestApplyReplacesDNSServiceAtAnotherIP(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: DNSServiceName, Namespace: Namespace},
		Spec: corev1.ServiceSpec{ClusterIP: "198.19.96.99"}}
	cs := newFakeAPI(t, old)
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(changed, "deleted Service kube-system/kube-dns at 198.19.96.99") ||
		!slices.Contains(changed, "created Service kube-system/kube-dns") {
		t.Fatalf("changes %q", changed)
	}
	svc, _ := cs.CoreV1().Services(Namespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	if svc.Spec.ClusterIP != o.IPs.ClusterDNSIP.String() {
		t.Fatalf("kube-dns at %s", svc.Spec.ClusterIP)
	}
}

func TestApplySkipsUnregisteredNodesAndSelects(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	o.Select = inventory.Selector{Servers: []string{"w1", "cp1"}}
	cs := newFakeAPI(t, registeredNodes("w1", "cp3")...)
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	var labelled []string
	for _, c := range changed {
		if strings.HasPrefix(c, "labelled Node ") || strings.HasPrefix(c, "tainted Node ") {
			labelled = append(labelled, strings.Fields(c)[2])
		}
	}
	if !slices.Equal(labelled, []string{"w1"}) {
		t.Fatalf("touched nodes %v, want only w1 (cp1 unregistered, cp3 not selected): %q", labelled, changed)
	}
	// Waiting: the Node registers while Apply polls.
	o.WaitForNodes = 5 * time.Second
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp1"}}, metav1.CreateOptions{})
	}()
	changed, err = Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(changed, "tainted Node cp1 (node-role.kubernetes.io/control-plane:NoSchedule)") {
		t.Fatalf("late node not handled: %q", changed)
	}
}

func TestOptionsValidation(t *testing.T) {
	o := options(t)
	for _, tc := range []struct {
		fw []string
		ok bool
	}{
		{[]string{"198.18.0.53"}, true},
		{[]string{"198.18.0.53:5353", "/etc/resolv.conf"}, true},
		{[]string{"dns.example.com"}, false},
		{[]string{"/etc/other.conf"}, false},
	} {
		oo := o
		oo.Forward = tc.fw
		_, err := Apply(context.Background(), fake.NewClientset(), oo)
		if (err == nil) != tc.ok {
			t.Errorf("forward %v: error %v, want ok=%v", tc.fw, err, tc.ok)
		}
	}
	if _, err := Apply(context.Background(), fake.NewClientset(), Options{}); err == nil {
		t.Error("Apply without a cluster succeeded")
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"ABC123":                       "ABC123",
		"SN 4711/ab ":                  "SN_4711_ab",
		"  --x--  ":                    "x",
		"":                             "",
		"///":                          "",
		"Dell Inc.":                    "Dell_Inc",
		strings.Repeat("a", 70):        strings.Repeat("a", 63),
		strings.Repeat("a", 62) + "-b": strings.Repeat("a", 62),
		"été":                          "t",
	} {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLabelValue(f *testing.F) {
	for _, s := range []string{"SN 4711", "Dell Inc.", "", "---", "été", strings.Repeat("x-", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := LabelValue(s)
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Fatalf("LabelValue(%q) = %q is not a label value: %v", s, v, errs)
		}
		if !utf8.ValidString(v) {
			t.Fatalf("invalid UTF-8 %q", v)
		}
	})
}

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// fakeEvictions makes the fake clientset delete a pod on eviction, as the
// API server does; refuse(pod) returning true answers 429 as a
// PodDisruptionBudget would.
func fakeEvictions(cs *fake.Clientset, refuse func(pod string) bool) *[]string {
	var evicted []string
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		if refuse(ev.Name) {
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 1)
		}
		evicted = append(evicted, ev.Namespace+"/"+ev.Name)
		return true, nil, cs.Tracker().Delete(podsGVR, ev.Namespace, ev.Name)
	})
	return &evicted
}

func drainFixture() []runtime.Object {
	ctl := true
	pod := func(name, node string, owner string, annotations map[string]string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: annotations},
			Spec: corev1.PodSpec{NodeName: node}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: owner, Name: "x", APIVersion: "apps/v1", Controller: &ctl}}
		}
		return p
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	return []runtime.Object{node, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w2"}},
		pod("web-1", "w1", "ReplicaSet", nil),
		pod("db-0", "w1", "StatefulSet", nil),
		pod("agent-x", "w1", "DaemonSet", nil),
		pod("static-w1", "w1", "", map[string]string{mirrorAnnotation: "abc"}),
		pod("web-2", "w2", "ReplicaSet", nil),
	}
}

func podNames(t *testing.T, cs *fake.Clientset) []string {
	t.Helper()
	l, err := cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func TestDrainAndDelete(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(drainFixture()...)
	refused := 0
	evicted := fakeEvictions(cs, func(pod string) bool {
		// The budget lets db-0 go on the second try.
		if pod == "db-0" && refused == 0 {
			refused++
			return true
		}
		return false
	})
	if err := DrainAndDelete(ctx, cs, "w1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	slices.Sort(*evicted)
	if !slices.Equal(*evicted, []string{"default/db-0", "default/web-1"}) {
		t.Errorf("evicted %v, want db-0 and web-1", *evicted)
	}
	if refused != 1 {
		t.Errorf("the budget was asked %d times", refused)
	}
	if got := podNames(t, cs); !slices.Equal(got, []string{"agent-x", "static-w1", "web-2"}) {
		t.Errorf("pods left %v, want the DaemonSet, mirror and other node's pods", got)
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node w1 still there: %v", err)
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{}); err != nil {
		t.Errorf("Node w2: %v", err)
	}
	// Cordoned before the first eviction.
	cordoned := false
	for _, a := range cs.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && a.GetResource().Resource == "nodes" && strings.Contains(string(p.GetPatch()), `"unschedulable":true`) {
			cordoned = true
		}
		if a.GetSubresource() == "eviction" && !cordoned {
			t.Fatal("evicted before cordoning")
		}
	}
	if !cordoned {
		t.Error("w1 was never cordoned")
	}
	// Done is done.
	if err := DrainAndDelete(ctx, cs, "w1", time.Second); err != nil {
		t.Errorf("second drain of a deleted node: %v", err)
	}
}

func TestDrainTimesOutNamingTheBlockedPod(t *testing.T) {
	cs := fake.NewClientset(drainFixture()...)
	fakeEvictions(cs, func(pod string) bool { return pod == "db-0" })
	start := time.Now()
	err := DrainAndDelete(context.Background(), cs, "w1", 700*time.Millisecond)
	if err == nil {
		t.Fatal("drain blocked by a budget succeeded")
	}
	if !strings.Contains(err.Error(), "default/db-0 (a PodDisruptionBudget refuses the eviction)") || !strings.Contains(err.Error(), "w1") {
		t.Fatalf("error does not name the node and blocked pod: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v with a 700ms timeout", el)
	}
	n, err := cs.CoreV1().Nodes().Get(context.Background(), "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Node deleted after a failed drain: %v", err)
	}
	if !n.Spec.Unschedulable {
		t.Error("Node not cordoned")
	}
}
