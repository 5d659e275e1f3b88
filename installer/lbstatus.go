package installer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/gates"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/lb"
	"github.com/tricenter/terraform-provider-tricenter/lb/controller"
)

// LoadBalancerStatus is the LoadBalancer Services as observed now: the
// controller's replicas and leader, and per Service its address, its
// ready endpoints per center and the nodes whose agents announce it.
type LoadBalancerStatus struct {
	Controller LoadBalancerController `json:"controller"`
	Services   []LoadBalancerService  `json:"services"`
}

// LoadBalancerController is the in-cluster controller as observed now.
type LoadBalancerController struct {
	// Replicas is what the Deployment asks for.
	Replicas int32 `json:"replicas"`
	// Available counts the controller's pods that are Ready on a node
	// that is Ready now (fresh heartbeat), not the Deployment's
	// availableReplicas, which is kube-controller-manager's last word.
	Available int32 `json:"available"`
	// Leader holds the Lease and renewed it within its duration ("" when
	// nobody does).
	Leader string `json:"leader,omitempty"`
	// LeaderNote says why nobody counts as leader when a holder is
	// named but its renewal is older than the Lease's duration.
	LeaderNote string `json:"leaderNote,omitempty"`
}

// LoadBalancerService is one Service of type LoadBalancer.
type LoadBalancerService struct {
	Service   string   `json:"service"`
	Addresses []string `json:"addresses,omitempty"`
	// Pending says why the Service has no address (the controller's last
	// warning Event).
	Pending string `json:"pending,omitempty"`
	Policy  string `json:"externalTrafficPolicy"`
	Prefer  string `json:"prefer"`
	// Ready counts the ready endpoints per center.
	Ready map[string]int `json:"readyEndpoints"`
	// Announcing lists, per center, the nodes whose agents announce the
	// address now (from the agents' status).
	Announcing map[string][]string `json:"announcing"`
}

// observeLoadBalancers reads the controller and the LoadBalancer Services
// through the API and matches them with the agents' announcements.
// problems are what is not as it should be: the controller not running,
// an agent's watch not synced, a Service with ready endpoints that no
// node announces; warnings are Services without an address.
func (e *Engine) observeLoadBalancers(ctx context.Context, cs kubernetes.Interface, agents map[string]*bgp.Status) (st *LoadBalancerStatus, problems, warnings []string, err error) {
	st = &LoadBalancerStatus{}
	d, err := cs.AppsV1().Deployments(addons.LBNamespace).Get(ctx, addons.LBName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		problems = append(problems, fmt.Sprintf("load-balancer controller: no Deployment %s/%s (run apply)", addons.LBNamespace, addons.LBName))
	case err != nil:
		return nil, nil, nil, fmt.Errorf("load-balancer controller: %w", err)
	default:
		if d.Spec.Replicas != nil {
			st.Controller.Replicas = *d.Spec.Replicas
		}
		if st.Controller.Available, err = e.controllerReadyNow(ctx, cs, d); err != nil {
			return nil, nil, nil, err
		}
		if st.Controller.Available == 0 {
			problems = append(problems, fmt.Sprintf("load-balancer controller: none of %d replicas Ready on a Ready node", st.Controller.Replicas))
		}
	}
	l, err := cs.CoordinationV1().Leases(addons.LBNamespace).Get(ctx, controller.LeaseName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, nil, nil, fmt.Errorf("load-balancer controller's Lease: %w", err)
	default:
		st.Controller.Leader, st.Controller.LeaderNote = leaseHolderNow(l, e.cfg.Clock())
	}
	centerOf := map[string]string{}
	for _, h := range e.cfg.Cluster.Hosts() {
		centerOf[h.Name] = h.Center.Name
	}
	// Which nodes announce which /32, and whether their watch is sound.
	announcing := map[string][]string{}
	for _, n := range slices.Sorted(maps.Keys(agents)) {
		l := agents[n].LoadBalancers
		if l == nil {
			problems = append(problems, fmt.Sprintf("BGP agent on %s: not watching LoadBalancer Services (run apply)", n))
			continue
		}
		switch {
		case !l.Synced:
			problems = append(problems, fmt.Sprintf("BGP agent on %s: LoadBalancer watch not synced (%s)", n, orNone(l.Error)))
		case l.Error != "":
			problems = append(problems, fmt.Sprintf("BGP agent on %s: LoadBalancer watch: %s (announcing the routes as last known)", n, l.Error))
		}
		for _, r := range l.Routes {
			if r.Announced {
				announcing[strings.TrimSuffix(r.Prefix, "/32")] = append(announcing[strings.TrimSuffix(r.Prefix, "/32")], n)
			}
		}
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("LoadBalancer Services: %w", err)
	}
	slices.SortFunc(svcs.Items, func(a, b corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	def := e.cfg.Cluster.Spec.Network.LoadBalancerPrefer
	if def == "" {
		def = string(bgp.DefaultLoadBalancerPrefer)
	}
	for _, s := range svcs.Items {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer || (s.Spec.LoadBalancerClass != nil && *s.Spec.LoadBalancerClass != controller.Class) {
			continue
		}
		key := s.Namespace + "/" + s.Name
		v := LoadBalancerService{Service: key, Policy: string(s.Spec.ExternalTrafficPolicy), Prefer: def,
			Ready: map[string]int{}, Announcing: map[string][]string{}}
		if p, ok := s.Annotations[lb.AnnotationPrefer]; ok {
			v.Prefer = p
		}
		eps, err := cs.DiscoveryV1().EndpointSlices(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + s.Name})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("EndpointSlices of %s: %w", key, err)
		}
		ready := 0
		for _, sl := range eps.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				c := "(no zone)"
				if ep.Zone != nil {
					c = *ep.Zone
				}
				v.Ready[c]++
				ready++
			}
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP == "" {
				continue
			}
			v.Addresses = append(v.Addresses, in.IP)
			for _, n := range announcing[in.IP] {
				c := centerOf[n]
				if !slices.Contains(v.Announcing[c], n) {
					v.Announcing[c] = append(v.Announcing[c], n)
				}
			}
		}
		for c := range v.Announcing {
			sort.Strings(v.Announcing[c])
		}
		switch {
		case len(v.Addresses) == 0:
			v.Pending = e.lastWarning(ctx, cs, &s)
			warnings = append(warnings, fmt.Sprintf("LoadBalancer Service %s: no address (%s)", key, v.Pending))
		case ready > 0 && len(v.Announcing) == 0:
			problems = append(problems, fmt.Sprintf("LoadBalancer Service %s: %s has %d ready endpoints but no node announces it",
				key, strings.Join(v.Addresses, ", "), ready))
		}
		st.Services = append(st.Services, v)
	}
	return st, problems, warnings, nil
}

// lastWarning is the newest warning Event of the controller on s.
func (e *Engine) lastWarning(ctx context.Context, cs kubernetes.Interface, s *corev1.Service) string {
	evs, err := cs.CoreV1().Events(s.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + s.Name + ",type=Warning"})
	if err != nil {
		return "events not read: " + err.Error()
	}
	var last *corev1.Event
	for i := range evs.Items {
		ev := &evs.Items[i]
		if ev.Source.Component != controller.Component || ev.InvolvedObject.UID != s.UID {
			continue
		}
		if last == nil || eventTime(ev).After(eventTime(last).Time) {
			last = ev
		}
	}
	if last == nil {
		return "the controller has not said why"
	}
	return last.Message
}

func eventTime(ev *corev1.Event) metav1.Time {
	if !ev.LastTimestamp.IsZero() {
		return ev.LastTimestamp
	}
	return metav1.NewTime(ev.EventTime.Time)
}

// controllerReadyNow counts the Deployment's pods whose Ready condition
// is True on a node the health rule finds Ready now: a pod on a dead
// server keeps its last Ready condition until the node controller
// notices, 40 s or more later.
func (e *Engine) controllerReadyNow(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) (int32, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return 0, fmt.Errorf("load-balancer controller: Deployment selector: %w", err)
	}
	pods, err := cs.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return 0, fmt.Errorf("load-balancer controller's pods: %w", err)
	}
	var nodes []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) && p.Spec.NodeName != "" {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	if len(nodes) == 0 {
		return 0, nil
	}
	judged, err := health.Observe(ctx, cs, nodes, nil, e.cfg.Clock)
	if err != nil {
		return 0, fmt.Errorf("load-balancer controller's nodes: %w", err)
	}
	ready := map[string]bool{}
	for _, n := range judged {
		ready[n.Name] = n.Ready
	}
	var n int32
	for _, name := range nodes {
		if ready[name] {
			n++
		}
	}
	return n, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// leaseHolderNow names the Lease's holder when its last renewal is within
// the Lease's duration at now, the rule client-go's leader election
// itself applies; otherwise it names nobody and says why.
func leaseHolderNow(l *coordinationv1.Lease, now time.Time) (holder, note string) {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "", ""
	}
	h := *l.Spec.HolderIdentity
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return "", h + " holds the Lease but never renewed it"
	}
	d := time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	if age := now.Sub(l.Spec.RenewTime.Time); age > d {
		return "", fmt.Sprintf("%s last renewed the Lease %v ago (expired after %v)", h, age.Round(time.Second), d)
	}
	return h, ""
}

func orNone(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}

// gateLoadBalancer holds when the controller has an available replica
// and a leader, and every agent of the run watches the Services, synced
// and without error (and no Service with ready endpoints goes
// unannounced).
func (r *applyRun) gateLoadBalancer(ctx context.Context) (string, error) {
	cs, err := r.e.Clientset()
	if err != nil {
		return "", gates.Permanent(err)
	}
	names := r.limit(hostNames(r.e.cfg.Cluster.Hosts()))
	hosts, err := r.m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		return "", err
	}
	sts, errs := BGPStatuses(ctx, r.m, hosts)
	st, problems, _, err := r.e.observeLoadBalancers(ctx, cs, sts)
	if err != nil {
		return "", err
	}
	for _, n := range slices.Sorted(maps.Keys(errs)) {
		problems = append(problems, "BGP agent on "+n+": "+errs[n].Error())
	}
	if st.Controller.Leader == "" {
		problems = append(problems, "load-balancer controller: no replica holds the Lease"+inParens(st.Controller.LeaderNote))
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("controller %d/%d Ready now (leader %s), %d agents watching, %d LoadBalancer Services",
		st.Controller.Available, st.Controller.Replicas, st.Controller.Leader, len(sts), len(st.Services)), nil
}

// inParens is " (s)", or "" for an empty s.
func inParens(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
