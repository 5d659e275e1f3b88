package installer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Gate is one verification after apply.
type Gate struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// NotRun says why a gate was not checked this time (OK is then
	// false and the gate does not fail the run).
	NotRun string        `json:"notRun,omitempty"`
	Detail string        `json:"detail,omitempty"`
	Took   time.Duration `json:"took"`
}

// ErrGate is wrapped when a verification gate does not hold.
var ErrGate = errors.New("verification gate failed")

// Topology labels every node carries.
const (
	LabelRegion = "topology.kubernetes.io/region"
	LabelZone   = "topology.kubernetes.io/zone"
	LabelRack   = "tricenter.io/rack"
)

// The gates' workload image (imported on every node, never pulled).
const (
	ImageProbe = "probe.oci.tar"
	ProbeImage = "tricenter.io/tricenter-probe:v1"
	// nsPrefix names each run's namespace (a random suffix, so
	// a run never waits for the last one's to terminate).
	nsPrefix  = "tricenter-gates-"
	gateLabel = "tricenter.io/gate"
	// staleGate is the age past which a gate namespace is an interrupted
	// run's leftover (a gate run takes seconds to a few minutes).
	staleGate      = 30 * time.Minute
	probePort      = 8080
	gatePoll       = time.Second
	gateFieldOwner = "tricenter"
)

// gates verifies what the run's components built; every gate that fails
// is named with its reason.
func (r *applyRun) gates(ctx context.Context) error {
	comps := r.res.Components
	has := func(c Component) bool { return slices.Contains(comps, c) }
	if has(Etcd) && r.res.Etcd != nil && r.res.Etcd.Health != nil {
		g := Gate{Name: "etcd healthy as planned", OK: r.res.Etcd.Health.OK()}
		if !g.OK {
			g.Detail = strings.Join(r.res.Etcd.Health.Problems, "; ")
		} else {
			g.Detail = fmt.Sprintf("%d members, leader elected", len(r.res.Etcd.Health.Members))
		}
		r.res.Gates = append(r.res.Gates, g)
	}
	if has(BGP) {
		r.gate(ctx, "BGP sessions Established and routes announced", r.gateBGP)
	}
	if has(ControlPlane) {
		for _, m := range r.e.Placement().ControlPlane {
			url := "https://" + net.JoinHostPort(m.Address, fmt.Sprint(APIPort))
			r.gate(ctx, "/readyz on "+m.Name, func(ctx context.Context) (string, error) { return r.e.readyz(ctx, url) })
		}
		if r.e.IPs().APIVIP.IsValid() {
			r.gate(ctx, "/readyz through the API VIP "+r.e.IPs().APIVIP.String(), func(ctx context.Context) (string, error) {
				return r.e.readyz(ctx, r.e.APIServerURL())
			})
		}
	}
	if has(Nodes) {
		// Servers just powered on (WaitReachable) get as long to report
		// Ready from their new boot as they had to accept SSH.
		r.gateWithin(ctx, "nodes Ready with their center and rack", max(r.e.cfg.GateTimeout, r.o.WaitReachable), r.gateNodes)
	}
	if has(Addons) {
		const name = "pod to pod across racks without NAT, DNS, Service"
		// The pod gate creates pods: a run that changed nothing leaves the
		// cluster alone unless asked (Options.Verify).
		if len(r.res.Changes) > 0 || len(r.res.APIChanges) > 0 || r.o.Verify {
			r.gate(ctx, name, r.gateDataplane)
		} else {
			r.res.Gates = append(r.res.Gates, Gate{Name: name, NotRun: "nothing changed (apply --verify runs it)"})
		}
	}
	var failed []string
	for _, g := range r.res.Gates {
		if !g.OK && g.NotRun == "" {
			failed = append(failed, g.Name+": "+g.Detail)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrGate, strings.Join(failed, "; "))
	}
	return nil
}

// gate runs one check, polling until it holds or the gate timeout passes.
func (r *applyRun) gate(ctx context.Context, name string, check func(ctx context.Context) (string, error)) {
	r.gateWithin(ctx, name, r.e.cfg.GateTimeout, check)
}

// gateWithin is gate with its own time limit (the run's context may end it
// sooner: a Terraform resource's timeout). A gate that does not hold in
// time fails with what its last check saw.
func (r *applyRun) gateWithin(ctx context.Context, name string, limit time.Duration, check func(ctx context.Context) (string, error)) {
	start := time.Now()
	r.e.log.Info("Checking gate", "gate", name)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var detail string
	var err, seen error
	for {
		detail, err = check(ctx)
		if err != nil && ctx.Err() == nil {
			seen = err
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, errPermanent) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(gatePoll):
		}
	}
	g := Gate{Name: name, OK: err == nil, Detail: detail, Took: time.Since(start)}
	switch {
	case err == nil:
	case ctx.Err() != nil && seen != nil:
		// The check cut short by the deadline says less than the last
		// one that completed.
		g.Detail = fmt.Sprintf("not within %v: %v", time.Since(start).Round(time.Second), seen)
	default:
		g.Detail = err.Error()
	}
	r.res.Gates = append(r.res.Gates, g)
}

// errPermanent marks a gate failure that polling will not fix.
var errPermanent = errors.New("permanent")

// readyz asks one API URL for /readyz.
func (e *Engine) readyz(ctx context.Context, server string) (string, error) {
	hc, err := e.apiHTTPClient(server)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errPermanent, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := newGet(rctx, server+"/readyz")
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

func (r *applyRun) gateBGP(ctx context.Context) (string, error) {
	names := r.limit(hostNames(r.e.cfg.Cluster.Hosts()))
	hosts, err := r.m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		return "", err
	}
	sts, errs := BGPStatuses(ctx, r.m, hosts)
	var problems []string
	for _, n := range slices.Sorted(maps.Keys(errs)) {
		problems = append(problems, n+": "+errs[n].Error())
	}
	sessions, routes := 0, 0
	for _, h := range hosts {
		st := sts[h.Name]
		if st == nil {
			continue
		}
		for _, s := range st.Sessions {
			if !s.Established() {
				problems = append(problems, fmt.Sprintf("%s: session %s (%s) is %s", h.Name, s.Name, s.Address, s.State))
			}
			sessions++
		}
		want, _ := r.e.IPs().PodCIDR(h.Name)
		found := false
		for _, a := range st.Announced {
			routes++
			if a.Prefix == want.String() {
				found = true
			}
		}
		if want.IsValid() && !found {
			problems = append(problems, fmt.Sprintf("%s: pod CIDR %s not announced", h.Name, want))
		}
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("%d sessions Established, %d prefixes announced by %d nodes", sessions, routes, len(hosts)), nil
}

func hostNames(hs []inventory.Host) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// NodeProblems lists why the observed nodes (health.Observe) do not match
// the inventory: missing, not Ready by the one health rule, or without
// their topology labels.
func NodeProblems(c *inventory.Cluster, nodes []health.Node) []string {
	var problems []string
	for _, nd := range nodes {
		h, ok := c.Host(nd.Name)
		if !ok {
			continue
		}
		if !nd.Registered {
			problems = append(problems, nd.Name+": not registered")
			continue
		}
		if !nd.Ready {
			problems = append(problems, nd.Name+": not Ready: "+nd.Reason)
		}
		want := map[string]string{LabelRegion: h.Site.Name, LabelZone: h.Center.Name, LabelRack: h.Rack.Name}
		for k, v := range want {
			if nd.Labels[k] != v {
				problems = append(problems, fmt.Sprintf("%s: label %s=%q, want %q", nd.Name, k, nd.Labels[k], v))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// gateNodes holds when every node of the run is Ready by the one health
// rule, its server's boot id verified: the gate follows an install over
// SSH, so a server that cannot be asked now fails it.
func (r *applyRun) gateNodes(ctx context.Context) (string, error) {
	cs, err := r.e.Clientset()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errPermanent, err)
	}
	names := r.limit(hostNames(r.e.cfg.Cluster.Hosts()))
	nodes, err := health.Observe(ctx, cs, names, bootIDs(r.m), r.e.cfg.Clock)
	if err != nil {
		return "", err
	}
	p := NodeProblems(r.e.cfg.Cluster, nodes)
	for _, n := range nodes {
		if n.Registered && n.HostBootID == "" {
			p = append(p, n.Name+": boot id "+n.Boot)
		}
	}
	if len(p) > 0 {
		return "", errors.New(strings.Join(p, "; "))
	}
	return fmt.Sprintf("%d nodes Ready (fresh heartbeat, boot id verified) with region, zone and rack labels", len(names)), nil
}

// probePair picks two schedulable Ready nodes in different racks (pods
// on control-plane-only servers are not scheduled there by the taint, but
// gate pods name their node and tolerate it).
func probePair(c *inventory.Cluster) (server, client string, err error) {
	hs := c.Hosts()
	for _, a := range hs {
		for _, b := range hs {
			if a.Rack.Name != b.Rack.Name {
				return a.Name, b.Name, nil
			}
		}
	}
	return "", "", fmt.Errorf("%w: the inventory has one rack: no cross-rack pod check possible", errPermanent)
}

func (r *applyRun) gateDataplane(ctx context.Context) (string, error) {
	cs, err := r.e.Clientset()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errPermanent, err)
	}
	srvNode, cliNode, err := probePair(r.e.cfg.Cluster)
	if err != nil {
		return "", err
	}
	removeGateNamespaces(ctx, cs, r.e.log) // left by an interrupted run
	ns := nsPrefix + randomSuffix()
	defer func() {
		// The namespace terminates in the background.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := cs.CoreV1().Namespaces().Delete(dctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			r.e.log.Warn("Gate namespace not removed", "namespace", ns, "err", err)
		}
	}()
	rep, err := runProbe(ctx, cs, ns, r.e.cfg.Cluster.Spec.Network.ClusterDomain, srvNode, cliNode)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errPermanent, err)
	}
	return rep, nil
}

// removeGateNamespaces deletes gate namespaces an interrupted run left
// behind (older than staleGate; without waiting for them to terminate).
// Younger ones may belong to a run going on beside this one (Terraform
// applies node resources in parallel).
func removeGateNamespaces(ctx context.Context, cs kubernetes.Interface, log *slog.Logger) {
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: gateLabel + "=true"})
	if err != nil {
		return
	}
	for _, n := range list.Items {
		if n.DeletionTimestamp != nil || time.Since(n.CreationTimestamp.Time) < staleGate {
			continue
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			log.Warn("Old gate namespace not removed", "namespace", n.Name, "err", err)
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func probePod(ns, name, node string, args []string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptrInt64(0),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "probe", Image: ProbeImage, ImagePullPolicy: corev1.PullNever,
				Command: append([]string{"/tricenter-probe"}, args...),
				Ports:   []corev1.ContainerPort{{ContainerPort: probePort}},
			}},
		},
	}
}

// runProbe starts a whoami server pod on one node and a checking pod on a
// node in another rack, and reads the checker's report.
func runProbe(ctx context.Context, cs kubernetes.Interface, ns, domain, srvNode, cliNode string) (string, error) {
	if domain == "" {
		domain = "cluster.local"
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{gateLabel: "true"}}},
		metav1.CreateOptions{FieldManager: gateFieldOwner})
	if err != nil {
		return "", fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	// The namespace's default ServiceAccount appears asynchronously;
	// pods are refused until it exists.
	if err := waitFor(ctx, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return "", fmt.Errorf("waiting for the default service account: %w", err)
	}
	pods := cs.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, probePod(ns, "probe-server", srvNode, []string{"serve", "--listen", fmt.Sprintf(":%d", probePort)}),
		metav1.CreateOptions{FieldManager: gateFieldOwner}); err != nil {
		return "", fmt.Errorf("creating the server pod on %s: %w", srvNode, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "probe-server"},
			Ports: []corev1.ServicePort{{Port: probePort, TargetPort: intstr.FromInt32(probePort)}}},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{FieldManager: gateFieldOwner}); err != nil {
		return "", fmt.Errorf("creating the probe Service: %w", err)
	}
	var srvIP string
	if err := waitFor(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "probe-server", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("the server pod on %s failed: %s", srvNode, podReason(p))
		}
		srvIP = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && srvIP != "", nil
	}); err != nil {
		return "", fmt.Errorf("server pod on %s: %w", srvNode, err)
	}
	svcName := fmt.Sprintf("probe.%s.svc.%s", ns, domain)
	args := []string{"check",
		"--peer", fmt.Sprintf("http://%s/whoami", net.JoinHostPort(srvIP, fmt.Sprint(probePort))),
		"--resolve", "kubernetes.default.svc." + domain,
		"--resolve", svcName,
		"--service", fmt.Sprintf("http://%s/whoami", net.JoinHostPort(svcName, fmt.Sprint(probePort))),
		"--timeout", "90s"}
	if _, err := pods.Create(ctx, probePod(ns, "probe-client", cliNode, args), metav1.CreateOptions{FieldManager: gateFieldOwner}); err != nil {
		return "", fmt.Errorf("creating the client pod on %s: %w", cliNode, err)
	}
	var done *corev1.Pod
	if err := waitFor(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "probe-client", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		done = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	}); err != nil {
		return "", fmt.Errorf("client pod on %s: %w", cliNode, err)
	}
	msg := ""
	for _, s := range done.Status.ContainerStatuses {
		if s.State.Terminated != nil {
			msg = s.State.Terminated.Message
		}
	}
	var rep struct {
		Self    []string `json:"self"`
		Results []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(msg), &rep); err != nil {
		return "", fmt.Errorf("client pod on %s ended %s without a report (%s)", cliNode, done.Status.Phase, podReason(done))
	}
	var parts, bad []string
	for _, x := range rep.Results {
		if x.OK {
			parts = append(parts, x.Name+" ok")
		} else {
			bad = append(bad, x.Name+": "+x.Detail)
		}
	}
	if len(bad) > 0 || done.Status.Phase != corev1.PodSucceeded || len(rep.Results) == 0 {
		return "", fmt.Errorf("from %s to %s: %s", cliNode, srvNode, strings.Join(bad, "; "))
	}
	return fmt.Sprintf("%s → %s: %s", cliNode, srvNode, strings.Join(parts, ", ")), nil
}

func podReason(p *corev1.Pod) string {
	var out []string
	if p.Status.Reason != "" {
		out = append(out, p.Status.Reason+": "+p.Status.Message)
	}
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil {
			out = append(out, w.Reason+": "+w.Message)
		}
		if t := s.State.Terminated; t != nil {
			out = append(out, fmt.Sprintf("exit %d %s", t.ExitCode, t.Reason))
		}
	}
	if len(out) == 0 {
		return string(p.Status.Phase)
	}
	return strings.Join(out, "; ")
}

// waitFor polls cond until it is true, fails, or ctx ends.
func waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(gatePoll):
		}
	}
}

func ptrInt64(v int64) *int64 { return &v }
