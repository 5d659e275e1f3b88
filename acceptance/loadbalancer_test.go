package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/lb"
	"github.com/tricenter/terraform-provider-tricenter/lb/controller"
)

const lbNamespace = "lb-check"

// lbLab is what the LoadBalancer checks share: the API, the lab's router
// (every TOR) and a client in the core router's namespace, outside the
// racks.
type lbLab struct {
	t    testing.TB
	ctx  context.Context
	k    *kubeLab
	e    *installer.Engine
	cs   kubernetes.Interface
	pool lb.Pool
	// addr is each node's address (its BGP next hop).
	addr map[string]string
	http *http.Client
	// local is the client's address as the core router's namespace
	// sends from (set by the dialer).
	mu    sync.Mutex
	local string
}

// checkLoadBalancers runs LoadBalancer Services on the lab with real
// kube-proxy and the agents' BGP: allocation (a requested address,
// sharing, a leader change), announcement under both traffic policies,
// withdrawal when a node's last endpoint goes, center preference with
// failover and back, and requests from the core router's namespace
// reaching the pods, with the client's address preserved under Local.
// The pods are pinned to one node per center: pods[center] = node.
func checkLoadBalancers(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, pods map[string]string, workers []string) {
	l := newLBLab(t, ctx, k, e)
	defer l.close()
	cs := l.cs
	centers := slices.Sorted(func(yield func(string) bool) {
		for c := range pods {
			if !yield(c) {
				return
			}
		}
	})
	for _, c := range centers {
		l.pod(c, pods[c])
	}
	l.waitReady(len(pods))

	// Local, every center alike: the nodes with a ready endpoint announce,
	// ECMP over them; the client's address reaches the pod.
	start := time.Now()
	l.service("local", corev1.ServiceExternalTrafficPolicyLocal, lb.PreferNone, nil)
	ip := l.address("local")
	assigned := time.Since(start)
	var all []string
	for _, c := range centers {
		all = append(all, l.addr[pods[c]])
	}
	l.nextHops(ip, all, 5*time.Second)
	routed := time.Since(start)
	l.core(ip)
	w := l.get(ip, 10*time.Second)
	served := time.Since(start)
	if w.Remote != l.localAddr() {
		t.Errorf("under Local the pod saw the client as %s, want the core router's %s", w.Remote, l.localAddr())
	}
	t.Logf("Service created → address %s assigned %v → routes at the TOR %v → first request served by %s %v",
		ip, assigned.Round(time.Millisecond), routed.Round(time.Millisecond), w.Host, served.Round(time.Millisecond))

	// The last endpoint on a node goes: that node withdraws.
	gone := centers[len(centers)-1]
	l.deletePod(gone)
	l.nextHops(ip, slices.DeleteFunc(slices.Clone(all), func(a string) bool { return a == l.addr[pods[gone]] }), 10*time.Second)
	t.Logf("pod on %s deleted: its node withdrew %s", pods[gone], ip)
	l.pod(gone, pods[gone])
	l.waitReady(len(pods))
	l.nextHops(ip, all, 10*time.Second)

	// Center preference: production while it has a ready endpoint, then
	// local DR, then remote DR, and back; requested address.
	want := l.free()
	l.service("prefer", corev1.ServiceExternalTrafficPolicyLocal, lb.PreferProduction,
		map[string]string{lb.AnnotationAddress: want})
	pip := l.address("prefer")
	if pip != want {
		t.Errorf("service prefer got %s, asked for %s", pip, want)
	}
	l.aspaths(pip, pods)
	order := l.centersByRole(centers)
	for i, c := range order {
		l.nextHops(pip, []string{l.addr[pods[c]]}, 10*time.Second)
		if w := l.get(pip, 10*time.Second); !strings.HasPrefix(w.Host, "lb-"+c) {
			t.Errorf("with %s preferred, served by %s", c, w.Host)
		}
		t.Logf("prefer production: traffic in %s", c)
		if i < len(order)-1 {
			l.deletePod(c)
		}
	}
	for _, c := range order[:len(order)-1] {
		l.pod(c, pods[c])
	}
	l.waitReady(len(pods))
	l.nextHops(pip, []string{l.addr[pods[order[0]]]}, 10*time.Second)
	t.Logf("prefer production: traffic back in %s", order[0])

	// Cluster: the workers announce; kube-proxy forwards to any endpoint.
	l.service("cluster", corev1.ServiceExternalTrafficPolicyCluster, lb.PreferNone, map[string]string{lb.AnnotationShare: "check"})
	cip := l.address("cluster")
	var wa []string
	for _, n := range workers {
		wa = append(wa, l.addr[n])
	}
	l.nextHops(cip, wa, 10*time.Second)
	l.get(cip, 10*time.Second)

	// A leader change hands out nothing twice: the leader's pod deleted,
	// a Service sharing "cluster"'s address on another port gets it, the
	// others keep theirs.
	lease, err := cs.CoordinationV1().Leases(addons.LBNamespace).Get(ctx, controller.LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("the controller's lease: %v", err)
	}
	leader := *lease.Spec.HolderIdentity
	if err := cs.CoreV1().Pods(addons.LBNamespace).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.serviceOn("cluster-8080", 8080, corev1.ServiceExternalTrafficPolicyCluster, lb.PreferNone, map[string]string{lb.AnnotationShare: "check"})
	l.service("after-leader-change", corev1.ServiceExternalTrafficPolicyCluster, lb.PreferNone, nil)
	if got := l.address("cluster-8080"); got != cip {
		t.Errorf("cluster-8080 got %s, want the shared %s", got, cip)
	}
	after := l.address("after-leader-change")
	if after == ip || after == pip || after == cip {
		t.Errorf("after the leader change %s was handed out again", after)
	}
	for n, want := range map[string]string{"local": ip, "prefer": pip, "cluster": cip} {
		if got := l.address(n); got != want {
			t.Errorf("service %s moved from %s to %s across the leader change", n, want, got)
		}
	}
	lease, err = cs.CoordinationV1().Leases(addons.LBNamespace).Get(ctx, controller.LeaseName, metav1.GetOptions{})
	if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == leader {
		t.Errorf("the lease is still held by the deleted %s", leader)
	}
	l.event("local", controller.ReasonAssigned)

	// Deleted: the address is withdrawn everywhere.
	for _, n := range []string{"local", "prefer"} {
		if err := cs.CoreV1().Services(lbNamespace).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l.nextHops(ip, nil, 10*time.Second)
	l.nextHops(pip, nil, 10*time.Second)
}

// newLBLab waits for the controller and makes the namespace of the
// checks' pods and Services; close deletes it.
func newLBLab(t testing.TB, ctx context.Context, k *kubeLab, e *installer.Engine) *lbLab {
	t.Helper()
	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := lb.PoolFor(e.Cluster(), e.IPs())
	if err != nil {
		t.Fatal(err)
	}
	l := &lbLab{t: t, ctx: ctx, k: k, e: e, cs: cs, pool: pool, addr: map[string]string{}}
	for _, n := range k.lab.BGPPlan().Nodes {
		l.addr[n.Name] = n.Address.String()
	}
	cores := k.lab.Cores()
	if len(cores) == 0 {
		t.Fatal("the lab has no core router to send requests from")
	}
	core := cores[0].NS
	d := &net.Dialer{Timeout: time.Second}
	l.http = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := core.DialContext(ctx, d, network, addr)
			if err == nil {
				l.mu.Lock()
				l.local, _, _ = net.SplitHostPort(c.LocalAddr().String())
				l.mu.Unlock()
			}
			return c, err
		}}}

	// The controller runs (two replicas, one leading).
	if err := pollUntil(ctx, 2*time.Minute, func() error {
		d, err := cs.AppsV1().Deployments(addons.LBNamespace).Get(ctx, addons.LBName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas < addons.LBReplicas {
			return fmt.Errorf("%d of %d controller replicas available", d.Status.AvailableReplicas, addons.LBReplicas)
		}
		return nil
	}); err != nil {
		t.Fatalf("load-balancer controller: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lbNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return l
}

// close deletes the namespace: the Services and pods go with it, and
// their addresses from the routers.
func (l *lbLab) close() {
	l.t.Helper()
	if err := l.cs.CoreV1().Namespaces().Delete(context.Background(), lbNamespace, metav1.DeleteOptions{}); err != nil {
		l.t.Errorf("deleting namespace %s: %v", lbNamespace, err)
	}
	if err := pollUntil(l.ctx, 2*time.Minute, func() error {
		_, err := l.cs.CoreV1().Namespaces().Get(l.ctx, lbNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("namespace %s still there", lbNamespace)
	}); err != nil {
		l.t.Error(err)
	}
}

func (l *lbLab) localAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.local
}

// pod runs the probe on node, named after its center.
func (l *lbLab) pod(center, node string) {
	l.t.Helper()
	no, yes := false, true
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lb-" + center, Namespace: lbNamespace,
		Labels: map[string]string{"app": "lb-check", "center": center}},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: new(int64),
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "probe", Image: installer.ProbeImage, ImagePullPolicy: corev1.PullNever,
				Args:  []string{"serve", "--listen", ":8080"},
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}}}}
	if _, err := l.cs.CoreV1().Pods(lbNamespace).Create(l.ctx, p, metav1.CreateOptions{}); err != nil {
		l.t.Fatalf("pod on %s: %v", node, err)
	}
}

func (l *lbLab) deletePod(center string) {
	l.t.Helper()
	zero := int64(0)
	if err := l.cs.CoreV1().Pods(lbNamespace).Delete(l.ctx, "lb-"+center, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		l.t.Fatal(err)
	}
	if err := pollUntil(l.ctx, time.Minute, func() error {
		_, err := l.cs.CoreV1().Pods(lbNamespace).Get(l.ctx, "lb-"+center, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("pod lb-%s still there", center)
	}); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lbLab) waitReady(n int) {
	l.t.Helper()
	if err := pollUntil(l.ctx, 2*time.Minute, func() error {
		ps, err := l.cs.CoreV1().Pods(lbNamespace).List(l.ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range ps.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != n {
			return fmt.Errorf("%d of %d probe pods ready", ready, n)
		}
		return nil
	}); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lbLab) service(name string, policy corev1.ServiceExternalTrafficPolicy, prefer lb.Preference, ann map[string]string) {
	l.t.Helper()
	l.serviceOn(name, 80, policy, prefer, ann)
}

func (l *lbLab) serviceOn(name string, port int32, policy corev1.ServiceExternalTrafficPolicy, prefer lb.Preference, ann map[string]string) {
	l.t.Helper()
	a := map[string]string{lb.AnnotationPrefer: string(prefer)}
	for k, v := range ann {
		a[k] = v
	}
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lbNamespace, Annotations: a},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: policy,
			Selector: map[string]string{"app": "lb-check"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	if _, err := l.cs.CoreV1().Services(lbNamespace).Create(l.ctx, s, metav1.CreateOptions{}); err != nil {
		l.t.Fatalf("service %s: %v", name, err)
	}
}

// address waits for the Service's address and checks it is the pool's.
func (l *lbLab) address(name string) string {
	l.t.Helper()
	var ip string
	if err := pollUntil(l.ctx, 30*time.Second, func() error {
		s, err := l.cs.CoreV1().Services(lbNamespace).Get(l.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("service %s has no address", name)
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return nil
	}); err != nil {
		l.t.Fatal(err)
	}
	a := netip.MustParseAddr(ip)
	if why, reserved := l.pool.Reserved[a]; reserved {
		l.t.Errorf("service %s got %s: %s", name, ip, why)
	}
	if !slices.ContainsFunc(l.pool.Ranges, func(p netip.Prefix) bool { return p.Contains(a) }) {
		l.t.Errorf("service %s got %s, outside the pool %v", name, ip, l.pool.Ranges)
	}
	return ip
}

// free is an address of the pool no Service holds and none reserves,
// from the top of the pool.
func (l *lbLab) free() string {
	l.t.Helper()
	ss, err := l.cs.CoreV1().Services("").List(l.ctx, metav1.ListOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	held := map[string]bool{}
	for _, s := range ss.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			held[in.IP] = true
		}
	}
	r := l.pool.Ranges[len(l.pool.Ranges)-1]
	a := r.Addr()
	for n := r.Addr(); r.Contains(n); n = n.Next() {
		a = n
	}
	for ; r.Contains(a); a = a.Prev() {
		if _, res := l.pool.Reserved[a]; !res && !held[a.String()] {
			return a.String()
		}
	}
	l.t.Fatal("no free address in the pool")
	return ""
}

// nextHops waits until the lab router's kernel (its FIB: the best paths
// and those multipath adds) routes ip/32 through exactly want (none: no
// route).
func (l *lbLab) nextHops(ip string, want []string, d time.Duration) {
	l.t.Helper()
	took, err := l.k.lab.Router().WaitKernelNextHops(ip+"/32", want, d)
	if err != nil {
		paths, _ := l.k.lab.Router().Paths(ip + "/32")
		l.t.Fatalf("%s: %v (BGP paths %+v)", ip, err, paths)
	}
	l.t.Logf("%s routed through %v after %v", ip, want, took.Round(time.Millisecond))
}

// core checks the core router learned ip/32.
func (l *lbLab) core(ip string) {
	l.t.Helper()
	c := l.k.lab.Cores()[0]
	if err := pollUntil(l.ctx, 10*time.Second, func() error {
		ps, err := c.Paths(ip + "/32")
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			return fmt.Errorf("the core router has no route to %s", ip)
		}
		return nil
	}); err != nil {
		l.t.Fatal(err)
	}
}

// aspaths checks each center's node announces ip with its prepends: the
// path through a node of a center of role r is 1+lb.Prepends longer
// than the node's own ASN alone.
func (l *lbLab) aspaths(ip string, pods map[string]string) {
	l.t.Helper()
	roles := map[string]string{}
	for _, c := range l.e.Cluster().Spec.Centers {
		roles[c.Name] = string(c.Role)
	}
	if err := pollUntil(l.ctx, 10*time.Second, func() error {
		ps, err := l.k.lab.Router().Paths(ip + "/32")
		if err != nil {
			return err
		}
		for c, node := range pods {
			want := 1
			switch roles[c] {
			case "local-dr":
				want = 2
			case "remote-dr":
				want = 3
			}
			i := slices.IndexFunc(ps, func(p bgplab.Path) bool { return p.NextHop == l.addr[node] })
			if i < 0 {
				return fmt.Errorf("no path to %s through %s (%s)", ip, node, c)
			}
			if n := len(strings.Fields(ps[i].ASPath)); n != want {
				return fmt.Errorf("path to %s through %s (%s, %s): AS path %q, want %d ASNs", ip, node, c, roles[c], ps[i].ASPath, want)
			}
		}
		return nil
	}); err != nil {
		l.t.Error(err)
	}
}

// centersByRole orders centers production, local DR, remote DR.
func (l *lbLab) centersByRole(centers []string) []string {
	rank := map[string]int{"production": 0, "local-dr": 1, "remote-dr": 2}
	roles := map[string]int{}
	for _, c := range l.e.Cluster().Spec.Centers {
		roles[c.Name] = rank[string(c.Role)]
	}
	out := slices.Clone(centers)
	slices.SortFunc(out, func(a, b string) int { return roles[a] - roles[b] })
	return out
}

type whoami struct {
	Remote string `json:"remote"`
	Host   string `json:"host"`
}

// get asks http://ip/whoami from the core router's namespace until it
// answers, for at most d.
func (l *lbLab) get(ip string, d time.Duration) whoami {
	l.t.Helper()
	var w whoami
	if err := pollUntil(l.ctx, d, func() error {
		resp, err := l.http.Get("http://" + ip + "/whoami")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", ip, resp.Status)
		}
		return json.Unmarshal(b, &w)
	}); err != nil {
		l.t.Fatalf("GET http://%s/whoami from the core router: %v (%s)", ip, err, l.k.routerPaths(ip))
	}
	return w
}

func (l *lbLab) event(name, reason string) {
	l.t.Helper()
	evs, err := l.cs.CoreV1().Events(lbNamespace).List(l.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		l.t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Reason == reason && e.Source.Component == controller.Component {
			return
		}
	}
	l.t.Errorf("service %s has no %s event from %s", name, reason, controller.Component)
}
