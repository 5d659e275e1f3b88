// Package watch feeds a node's BGP agent the LoadBalancer Services it
// announces. A Watcher runs shared informers on Services and
// discovery/v1 EndpointSlices in every namespace — all it needs is list
// and watch on those two resources, no Nodes and no Pods — turns every
// Service of type LoadBalancer that has ingress addresses into an
// lb.ServiceView and hands the routes lb.Announcements decides for the
// node to a callback, a few milliseconds after the change that moved them.
//
// What a Service says:
//   - status.loadBalancer.ingress[].ip: its addresses (IPv4; the
//     in-cluster allocator writes them).
//   - spec.externalTrafficPolicy Local: only nodes with a ready endpoint
//     of their own announce.
//   - lb.AnnotationNodes ("a,b"): the nodes that announce a Cluster-policy
//     Service instead of every worker.
//   - lb.AnnotationPrefer: its center preference. An invalid value is
//     ignored with a warning naming the Service; the node's default
//     (the inventory's) applies.
//
// Its endpoints come from the EndpointSlices labelled
// kubernetes.io/service-name with its name: the node from
// endpoint.nodeName, the center from endpoint.zone, ready from
// conditions.ready (unset counts as ready, as the API documents).
//
// When the API cannot be reached the informers keep their caches and
// retry by themselves: the routes stay as last known (as MetalLB's
// speakers keep announcing rather than withdraw everything on API loss),
// and Status reports the error until the next successful sync.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	watchapi "k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// DefaultDebounce is how long a Watcher gathers changes before it
// computes the routes again: a rolling update's slices come in bursts, and
// the withdrawal must still reach the routers within a second.
const DefaultDebounce = 5 * time.Millisecond

// RetryClient is how often Run retries building the client from a
// kubeconfig file it could not read.
const RetryClient = 5 * time.Second

// Config tunes a Watcher.
type Config struct {
	// Client talks to the API; when nil, Run builds one from Kubeconfig
	// (and retries every RetryClient while the file cannot be read).
	Client     Client
	Kubeconfig string
	// Node is the node the routes are for.
	Node lb.Node
	// Prefer applies to Services without a valid lb.AnnotationPrefer.
	Prefer lb.Preference
	// OnChange receives the node's whole route set: once the caches have
	// synced, then every time it changes. It runs on the Watcher's
	// goroutine: a slow callback delays the next computation, not the
	// informers.
	OnChange func([]lb.Route)
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
	// ProxySynced, when set, reports whether the node's kube-proxy has
	// finished a sync of its rules after since (KubeProxySynced). A route
	// the node starts announcing then waits for it, at most ProxyWait, so
	// that the routers do not send traffic to the node before kube-proxy
	// forwards it; withdrawals never wait.
	ProxySynced func(ctx context.Context, since time.Time) bool
	// ProxyWait defaults to DefaultProxyWait.
	ProxyWait time.Duration
	Logger    *slog.Logger
}

// DefaultProxyWait bounds the wait for kube-proxy before a new route is
// announced: kube-proxy syncs at most once a second (its minSyncPeriod)
// and then takes a few hundred milliseconds on a busy node.
const DefaultProxyWait = 2 * time.Second

// KubeProxySynced asks kube-proxy's health endpoint (url, such as
// http://127.0.0.1:10256/healthz) whether its last sync ended after
// since. Its answer says so whatever the status code (503 while a sync
// is overdue).
func KubeProxySynced(url string) func(ctx context.Context, since time.Time) bool {
	hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	return func(ctx context.Context, since time.Time) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h struct {
			LastUpdated time.Time `json:"lastUpdated"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h); err != nil {
			return false
		}
		return h.LastUpdated.After(since)
	}
}

// Status is what a Watcher reports.
type Status struct {
	// Synced is true once both caches have been listed.
	Synced bool
	// Services is the number of LoadBalancer Services with addresses.
	Services int
	// Routes is the number of routes last handed to OnChange.
	Routes int
	// Error is the last error (list, watch, or reading the kubeconfig)
	// and ErrorAt its time; it is cleared when the resource it came from
	// delivers again.
	Error   string
	ErrorAt time.Time
}

// Watcher watches LoadBalancer Services for one node.
type timedError struct {
	msg string
	at  time.Time
}

type Watcher struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	mu     sync.Mutex
	status Status
	// errs are the last errors by resource ("kubeconfig", "services",
	// "endpointslices").
	errs map[string]timedError
	// warned is the invalid prefer value last logged per Service.
	warned map[string]string
}

// New prepares a Watcher; Run starts it.
func New(c Config) *Watcher {
	if c.Debounce == 0 {
		c.Debounce = DefaultDebounce
	}
	if c.Prefer == "" {
		c.Prefer = lb.PreferProduction
	}
	if c.OnChange == nil {
		c.OnChange = func([]lb.Route) {}
	}
	l := c.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Watcher{cfg: c, log: l.With("node", c.Node.Name), kick: make(chan struct{}, 1),
		warned: map[string]string{}, errs: map[string]timedError{}}
}

// Client is the API the watch needs: Services and EndpointSlices
// (kubernetes.Interface has it). The agent builds only these two typed
// clients (NewClient), not the whole clientset, which would triple its
// binary.
type Client interface {
	CoreV1() corev1client.CoreV1Interface
	DiscoveryV1() discoveryv1client.DiscoveryV1Interface
}

type clients struct {
	core *corev1client.CoreV1Client
	disc *discoveryv1client.DiscoveryV1Client
}

func (c clients) CoreV1() corev1client.CoreV1Interface                { return c.core }
func (c clients) DiscoveryV1() discoveryv1client.DiscoveryV1Interface { return c.disc }

// NewClient builds a client from a kubeconfig file.
func NewClient(kubeconfig string) (Client, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rc.UserAgent = "tricenter-bgp"
	// One HTTP client (and connection pool) for both.
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	core, err := corev1client.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	disc, err := discoveryv1client.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return clients{core: core, disc: disc}, nil
}

// Status reports whether the caches are synced and the last error.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	for _, e := range w.errs {
		if e.at.After(s.ErrorAt) {
			s.Error, s.ErrorAt = e.msg, e.at
		}
	}
	return s
}

func (w *Watcher) setError(from string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		delete(w.errs, from)
		return
	}
	w.errs[from] = timedError{msg: err.Error(), at: time.Now()}
}

// serviceNameIndex indexes EndpointSlices by namespace/service-name.
const serviceNameIndex = "service"

// Run watches until ctx ends. It returns nil then; it returns an error
// only for a Config it cannot run with.
func (w *Watcher) Run(ctx context.Context) error {
	cs := w.cfg.Client
	for cs == nil {
		if w.cfg.Kubeconfig == "" {
			return errors.New("load-balancer watch: neither a client nor a kubeconfig")
		}
		var err error
		if cs, err = NewClient(w.cfg.Kubeconfig); err != nil {
			w.log.Error("Cannot watch LoadBalancer Services: retrying", "err", err, "in", RetryClient)
			w.setError("kubeconfig", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(RetryClient):
			}
		}
	}
	w.setError("kubeconfig", nil)
	si := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
			return cs.CoreV1().Services(metav1.NamespaceAll).Watch(ctx, o)
		},
	}, &corev1.Service{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	ei := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
			return cs.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).Watch(ctx, o)
		},
	}, &discoveryv1.EndpointSlice{}, 0, cache.Indexers{serviceNameIndex: sliceService})
	svcLister := listerscorev1.NewServiceLister(si.GetIndexer())
	for res, inf := range map[string]cache.SharedIndexInformer{"services": si, "endpointslices": ei} {
		_ = inf.SetTransform(stripManagedFields)
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			// A watch that ends (EOF) or expires is renewed: not an error.
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return
			}
			w.log.Warn("Watching failed: retrying; the routes stay as they are", "resource", res, "err", err)
			w.setError(res, err)
		})
		poke := func() {
			w.setError(res, nil)
			w.poke()
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { poke() },
			UpdateFunc: func(any, any) { poke() },
			DeleteFunc: func(any) { poke() },
		}); err != nil {
			return fmt.Errorf("load-balancer watch on %s: %w", w.cfg.Node.Name, err)
		}
	}
	w.log.Info("Watching LoadBalancer Services", "center", w.cfg.Node.Center, "role", w.cfg.Node.Role, "worker", w.cfg.Node.Worker, "prefer", w.cfg.Prefer)
	var wg sync.WaitGroup
	for _, inf := range []cache.SharedIndexInformer{si, ei} {
		wg.Add(1)
		go func() { defer wg.Done(); inf.Run(ctx.Done()) }()
	}
	defer wg.Wait()
	if !cache.WaitForCacheSync(ctx.Done(), si.HasSynced, ei.HasSynced) {
		return nil // ctx ended
	}
	w.mu.Lock()
	w.status.Synced = true
	w.errs = map[string]timedError{}
	w.mu.Unlock()
	w.log.Info("LoadBalancer Services synced")

	var last []lb.Route
	first := true
	changed := time.Now()
	for {
		views := w.views(svcLister.List, ei.GetIndexer())
		routes := lb.Announcements(w.cfg.Node, views)
		w.mu.Lock()
		w.status.Services, w.status.Routes = len(views), len(routes)
		w.mu.Unlock()
		if first || !slices.Equal(routes, last) {
			if now := withoutNew(routes, last); !first && w.cfg.ProxySynced != nil && len(now) < len(routes) {
				// Withdrawals at once; new addresses once kube-proxy has
				// synced the change.
				if !slices.Equal(now, last) {
					w.cfg.OnChange(slices.Clone(now))
				}
				w.waitProxy(ctx, changed)
			}
			first = false
			last = routes
			w.cfg.OnChange(slices.Clone(routes))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		}
		changed = time.Now()
		// Gather the burst a change often comes in.
		t := time.NewTimer(w.cfg.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-w.kick:
		default:
		}
	}
}

// withoutNew is routes without the addresses last does not have.
func withoutNew(routes, last []lb.Route) []lb.Route {
	return slices.DeleteFunc(slices.Clone(routes), func(r lb.Route) bool {
		return !slices.ContainsFunc(last, func(l lb.Route) bool { return l.Addr == r.Addr })
	})
}

// waitProxy waits until kube-proxy has synced after since, at most
// ProxyWait.
func (w *Watcher) waitProxy(ctx context.Context, since time.Time) {
	limit := w.cfg.ProxyWait
	if limit == 0 {
		limit = DefaultProxyWait
	}
	start := time.Now()
	for !w.cfg.ProxySynced(ctx, since) {
		if time.Since(start) >= limit {
			w.log.Warn("kube-proxy has not synced the change: announcing anyway", "waited", limit)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	w.log.Debug("kube-proxy synced: announcing", "waited", time.Since(start))
}

// poke asks for a computation (informer goroutines: never blocks).
func (w *Watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// stripManagedFields keeps the caches small: nothing here reads them.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// views turns the cached LoadBalancer Services with addresses into
// lb.ServiceViews, sorted by key.
func (w *Watcher) views(list func(labels.Selector) ([]*corev1.Service, error), eps cache.Indexer) []lb.ServiceView {
	all, _ := list(labels.Everything()) // a lister never fails
	var out []lb.ServiceView
	seen := map[string]bool{}
	for _, s := range all {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := s.Namespace + "/" + s.Name
		v := lb.ServiceView{Key: key, Addrs: ingressAddrs(s),
			Local:  s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			Prefer: w.prefer(key, s.Annotations),
			Nodes:  splitNodes(s.Annotations[lb.AnnotationNodes]),
		}
		if len(v.Addrs) == 0 {
			continue
		}
		seen[key] = true
		objs, _ := eps.ByIndex(serviceNameIndex, key)
		for _, o := range objs {
			v.Endpoints = append(v.Endpoints, endpoints(o.(*discoveryv1.EndpointSlice))...)
		}
		out = append(out, v)
	}
	w.mu.Lock()
	for k := range w.warned {
		if !seen[k] {
			delete(w.warned, k)
		}
	}
	w.mu.Unlock()
	return out
}

// prefer is the Service's preference: its annotation when valid, else the
// default (warning once per invalid value).
func (w *Watcher) prefer(key string, ann map[string]string) lb.Preference {
	s, ok := ann[lb.AnnotationPrefer]
	if !ok {
		return w.cfg.Prefer
	}
	p, err := lb.ParsePreference(strings.TrimSpace(s))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		delete(w.warned, key)
		return p
	}
	if w.warned[key] != s {
		w.warned[key] = s
		w.log.Warn("Ignoring the Service's preference: the default applies", "service", key, "err", err, "default", w.cfg.Prefer)
	}
	return w.cfg.Prefer
}

// ingressAddrs are a Service's IPv4 ingress addresses, sorted and unique.
func ingressAddrs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range s.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(in.IP)
		if err != nil || !a.Unmap().Is4() {
			continue
		}
		out = append(out, a.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func splitNodes(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// endpoints are a slice's endpoints as lb sees them. An endpoint without
// a node name cannot be placed: it counts for the Service's readiness
// (a Cluster-policy Service still reaches it) but on no node.
func endpoints(s *discoveryv1.EndpointSlice) []lb.Endpoint {
	out := make([]lb.Endpoint, 0, len(s.Endpoints))
	for _, e := range s.Endpoints {
		ep := lb.Endpoint{Ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if e.NodeName != nil {
			ep.Node = *e.NodeName
		}
		if e.Zone != nil {
			ep.Center = *e.Zone
		}
		out = append(out, ep)
	}
	return out
}
