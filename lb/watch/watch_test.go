package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// The node the tests' watchers run for: a worker in the local-DR center.
var (
	dr   = lb.Node{Name: "dc2-w01", Center: "dc2", Role: inventory.RoleLocalDR, Worker: true}
	addr = netip.MustParseAddr("198.18.46.30")
)

// syncBuffer is a log sink safe for the watcher's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a Watcher on a client, with the route sets it delivered.
type running struct {
	w    *Watcher
	sets chan []lb.Route
	log  *syncBuffer
}

func start(t *testing.T, cs kubernetes.Interface, n lb.Node, prefer lb.Preference) *running {
	t.Helper()
	r := &running{sets: make(chan []lb.Route, 100), log: &syncBuffer{}}
	r.w = New(Config{Client: cs, Node: n, Prefer: prefer,
		Logger:   slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnChange: func(rs []lb.Route) { r.sets <- rs }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// next waits for the next route set, rendered as "ADDR:PREPENDS:SERVICE ...".
func (r *running) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case rs := <-r.sets:
		return render(rs)
	case <-time.After(d):
		t.Fatalf("no route set within %s (status %+v)", d, r.w.Status())
		return ""
	}
}

// quiet checks that no route set comes within d.
func (r *running) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case rs := <-r.sets:
		t.Fatalf("unexpected route set %q", render(rs))
	case <-time.After(d):
	}
}

func render(rs []lb.Route) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s:%d:%s", r.Addr, r.Prepends, r.Service))
	}
	return strings.Join(out, " ")
}

// fakeClient is client-go's fake clientset holding objs; watching
// receives once per resource when its watch is in place (the fake's
// watch misses what is created between its list and its watch).
func fakeClient(objs ...runtime.Object) (*fake.Clientset, chan string) {
	cs := fake.NewClientset(objs...)
	watching := make(chan string, 4)
	cs.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		gvr := a.GetResource()
		w, err := cs.Tracker().Watch(gvr, a.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		watching <- gvr.Resource
		return true, w, nil
	})
	return cs, watching
}

func waitWatching(t *testing.T, watching chan string) {
	t.Helper()
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case r := <-watching:
			seen[r] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("watches in place: %v, want services and endpointslices", seen)
		}
	}
}

type svcOpt func(*corev1.Service)

func lbService(ns, name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster},
		Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: addr.String()}}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func annotate(k, v string) svcOpt { return func(s *corev1.Service) { s.Annotations[k] = v } }

func local(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// ep is an endpoint on node in center; ready nil is left unset.
type ep struct {
	node, center string
	ready        *bool
}

var (
	yes = ptr(true)
	no  = ptr(false)
)

func ptr[T any](v T) *T { return &v }

func slice(ns, svc, name string, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("198.18.40.%d", i+2)},
			NodeName:   ptr(e.node),
			Zone:       ptr(e.center),
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready},
		})
	}
	return s
}

// TestFakeViews: what each Service and its slices become, with client-go's
// fake clientset (no API server).
func TestFakeViews(t *testing.T) {
	for _, tc := range []struct {
		name   string
		node   lb.Node
		prefer lb.Preference
		objs   []runtime.Object
		want   string
	}{
		{"production preferred by default: the DR node prepends once", dr, lb.PreferProduction, []runtime.Object{
			lbService("shop", "web"), slice("shop", "web", "web-1", ep{"dc1-w01", "dc1", yes}, ep{"dc2-w01", "dc2", yes}),
		}, "198.18.46.30:1:shop/web"},
		{"ready unset counts as ready", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web"), slice("shop", "web", "web-1", ep{"dc3-w01", "dc3", nil}),
		}, "198.18.46.30:0:shop/web"},
		{"no ready endpoint: no route", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web"), slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", no}),
		}, ""},
		{"slices of another Service or namespace do not count", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web"), slice("shop", "api", "api-1", ep{"dc2-w01", "dc2", yes}),
			slice("other", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, ""},
		{"endpoints of several slices", dr, lb.PreferProduction, []runtime.Object{
			lbService("shop", "web"), slice("shop", "web", "web-1", ep{"dc1-w01", "dc1", no}),
			slice("shop", "web", "web-2", ep{"dc2-w01", "dc2", yes}),
		}, "198.18.46.30:1:shop/web"},
		{"local policy: only a node with a ready endpoint of its own", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", local), slice("shop", "web", "web-1", ep{"dc2-w02", "dc2", yes}),
		}, ""},
		{"local policy on the endpoint's node", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", local), slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, "198.18.46.30:0:shop/web"},
		{"chosen nodes without this one", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", annotate(lb.AnnotationNodes, "dc1-w01, dc3-w01")), slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, ""},
		{"chosen nodes with this one, not a worker", lb.Node{Name: "dc2-s01", Center: "dc2", Role: inventory.RoleLocalDR}, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", annotate(lb.AnnotationNodes, "dc1-w01,dc2-s01")), slice("shop", "web", "web-1", ep{"dc1-w01", "dc1", yes}),
		}, "198.18.46.30:0:shop/web"},
		{"annotated preference wins over the default", dr, lb.PreferProduction, []runtime.Object{
			lbService("shop", "web", annotate(lb.AnnotationPrefer, "local")), slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, "198.18.46.30:0:shop/web"},
		{"not a LoadBalancer", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
			slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, ""},
		{"no address yet; hostnames and IPv6 are not routes", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "web.example"}, {IP: "2001:db8::1"}}
			}),
			slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, ""},
		{"two addresses, sorted", dr, lb.PreferNone, []runtime.Object{
			lbService("shop", "web", func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.46.31"}, {IP: "198.18.46.30"}}
			}),
			slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}),
		}, "198.18.46.30:0:shop/web 198.18.46.31:0:shop/web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, _ := fakeClient(tc.objs...)
			r := start(t, cs, tc.node, tc.prefer)
			if got := r.next(t, 10*time.Second); got != tc.want {
				t.Errorf("routes %q, want %q", got, tc.want)
			}
			if s := r.w.Status(); !s.Synced || s.Error != "" {
				t.Errorf("status %+v, want synced without error", s)
			}
		})
	}
}

// TestFakeInvalidPreference: an invalid annotation is ignored with one
// warning naming the Service, and the default applies.
func TestFakeInvalidPreference(t *testing.T) {
	cs, watching := fakeClient(lbService("shop", "web", annotate(lb.AnnotationPrefer, "nearest")),
		slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}))
	r := start(t, cs, dr, lb.PreferProduction)
	if got, want := r.next(t, 10*time.Second), "198.18.46.30:1:shop/web"; got != want {
		t.Errorf("routes %q, want %q (the default preference)", got, want)
	}
	waitWatching(t, watching)
	// Another change: the warning is not repeated.
	ctx := context.Background()
	if _, err := cs.DiscoveryV1().EndpointSlices("shop").Create(ctx, slice("shop", "web", "web-2", ep{"dc1-w01", "dc1", yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.quiet(t, 200*time.Millisecond) // same routes: nothing delivered
	log := r.log.String()
	if n := strings.Count(log, "Ignoring the Service's preference"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log)
	}
	for _, want := range []string{"service=shop/web", "nearest", "default=production"} {
		if !strings.Contains(log, want) {
			t.Errorf("warning lacks %q:\n%s", want, log)
		}
	}
}

// TestFakeChanges: routes follow the slices' readiness and the Service's
// address, each change delivered within a few milliseconds.
func TestFakeChanges(t *testing.T) {
	cs, watching := fakeClient()
	r := start(t, cs, dr, lb.PreferProduction)
	if got := r.next(t, 10*time.Second); got != "" {
		t.Fatalf("empty cluster: routes %q", got)
	}
	waitWatching(t, watching)
	ctx := context.Background()
	svcs, slices := cs.CoreV1().Services("shop"), cs.DiscoveryV1().EndpointSlices("shop")
	timed := func(what, want string, change func() error) {
		t.Helper()
		start := time.Now()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if got := r.next(t, 5*time.Second); got != want {
			t.Fatalf("%s: routes %q, want %q", what, got, want)
		}
		took := time.Since(start)
		t.Logf("%s: delivered in %v", what, took)
		if took > 500*time.Millisecond {
			t.Errorf("%s: delivered after %v: the withdrawal must reach the routers within 1s", what, took)
		}
	}
	web := lbService("shop", "web")
	web.Status = corev1.ServiceStatus{}
	if _, err := svcs.Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slices.Create(ctx, slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.quiet(t, 100*time.Millisecond) // no address yet
	timed("address assigned", "198.18.46.30:1:shop/web", func() error {
		_, err := svcs.UpdateStatus(ctx, lbService("shop", "web"), metav1.UpdateOptions{})
		return err
	})
	timed("endpoint not ready", "", func() error {
		_, err := slices.Update(ctx, slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", no}), metav1.UpdateOptions{})
		return err
	})
	timed("endpoint ready again", "198.18.46.30:1:shop/web", func() error {
		_, err := slices.Update(ctx, slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}), metav1.UpdateOptions{})
		return err
	})
	timed("preference changed", "198.18.46.30:0:shop/web", func() error {
		_, err := svcs.Update(ctx, lbService("shop", "web", annotate(lb.AnnotationPrefer, "none")), metav1.UpdateOptions{})
		return err
	})
	timed("slice deleted", "", func() error { return slices.Delete(ctx, "web-1", metav1.DeleteOptions{}) })
	if s := r.w.Status(); !s.Synced || s.Services != 1 || s.Routes != 0 || s.Error != "" {
		t.Errorf("status %+v, want synced, 1 Service, 0 routes, no error", s)
	}
}

// TestFakeListError: while the API refuses to list, the watcher is not
// synced, delivers nothing and reports the error; once it lists, it syncs
// and the error is gone.
func TestFakeListError(t *testing.T) {
	cs, _ := fakeClient(lbService("shop", "web"), slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}))
	var refuse atomic.Bool
	refuse.Store(true)
	cs.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refuse.Load() {
			return true, nil, errors.New("connection refused (fake)")
		}
		return false, nil, nil
	})
	r := start(t, cs, dr, lb.PreferNone)
	deadline := time.Now().Add(10 * time.Second)
	for r.w.Status().Error == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no error reported: %+v", r.w.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := r.w.Status(); s.Synced || !strings.Contains(s.Error, "connection refused (fake)") || s.ErrorAt.IsZero() {
		t.Errorf("status %+v, want not synced with the list error", s)
	}
	r.quiet(t, 100*time.Millisecond)
	refuse.Store(false)
	if got := r.next(t, 15*time.Second); got != "198.18.46.30:0:shop/web" {
		t.Errorf("routes %q after the API came back", got)
	}
	if s := r.w.Status(); !s.Synced || s.Error != "" {
		t.Errorf("status %+v, want synced without error", s)
	}
	if !strings.Contains(r.log.String(), "resource=services") {
		t.Errorf("the list error was not logged with its resource:\n%s", r.log.String())
	}
}

// TestKubeconfigMissing: Run keeps trying while the kubeconfig cannot be
// read, and says so in Status.
func TestKubeconfigMissing(t *testing.T) {
	w := New(Config{Kubeconfig: t.TempDir() + "/kubeconfig", Node: dr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for w.Status().Error == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s := w.Status()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Synced || !strings.Contains(s.Error, "kubeconfig") {
		t.Errorf("status %+v, want not synced with a kubeconfig error", s)
	}
	if err := New(Config{Node: dr}).Run(context.Background()); err == nil {
		t.Error("Run without a client or kubeconfig: no error")
	}
}

// TestFakeKubeProxyWait: a new address is handed over only once the
// node's kube-proxy (here a fake health endpoint answering as kube-proxy
// does) has synced after the change; a withdrawal goes at once, without
// asking it; with kube-proxy silent the route still goes after ProxyWait.
func TestFakeKubeProxyWait(t *testing.T) {
	var mu sync.Mutex
	var lastUpdated time.Time
	var asked atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable) // the body counts, not the code
		fmt.Fprintf(w, `{"lastUpdated":%q,"currentTime":%q,"healthy":false}`, lastUpdated.Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano))
	}))
	defer proxy.Close()
	sync := func() {
		mu.Lock()
		lastUpdated = time.Now()
		mu.Unlock()
	}

	cs, watching := fakeClient(lbService("shop", "web"))
	r := &running{sets: make(chan []lb.Route, 100), log: &syncBuffer{}}
	r.w = New(Config{Client: cs, Node: dr, Prefer: lb.PreferNone, ProxyWait: 3 * time.Second,
		ProxySynced: KubeProxySynced(proxy.URL + "/healthz"),
		Logger:      slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnChange:    func(rs []lb.Route) { r.sets <- rs }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if got := r.next(t, 10*time.Second); got != "" {
		t.Fatalf("no endpoints: routes %q", got)
	}
	waitWatching(t, watching)
	slices := cs.DiscoveryV1().EndpointSlices("shop")

	// A ready endpoint: held back until kube-proxy syncs.
	if _, err := slices.Create(ctx, slice("shop", "web", "web-1", ep{"dc2-w01", "dc2", yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.quiet(t, 400*time.Millisecond)
	if asked.Load() == 0 {
		t.Fatal("kube-proxy was not asked before announcing")
	}
	synced := time.Now()
	sync()
	if got := r.next(t, time.Second); got != "198.18.46.30:0:shop/web" {
		t.Fatalf("after kube-proxy synced: routes %q", got)
	}
	t.Logf("announced %v after kube-proxy's sync", time.Since(synced).Round(time.Millisecond))

	// The endpoint goes: withdrawn at once, kube-proxy not asked.
	before := asked.Load()
	start := time.Now()
	if err := slices.Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t, time.Second); got != "" {
		t.Fatalf("endpoint gone: routes %q", got)
	}
	if took := time.Since(start); took > 500*time.Millisecond || asked.Load() != before {
		t.Errorf("withdrawal took %v and asked kube-proxy %d times", took, asked.Load()-before)
	}

	// kube-proxy never syncs: announced after ProxyWait anyway.
	start = time.Now()
	if _, err := slices.Create(ctx, slice("shop", "web", "web-2", ep{"dc2-w01", "dc2", yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t, 5*time.Second); got != "198.18.46.30:0:shop/web" {
		t.Fatalf("kube-proxy silent: routes %q", got)
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("announced after %v, before ProxyWait (3s) ran out", took)
	}
	if !strings.Contains(r.log.String(), "kube-proxy has not synced the change") {
		t.Errorf("no warning logged:\n%s", r.log.String())
	}
}
