package acceptance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/upgrade"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The releases the upgrade scenario starts from: the newest patches of
// the previous minors the artifact set holds.
const (
	upgradeFromKubernetes = "v1.36.3"
	upgradeFromEtcd       = "v3.5.35"
)

// upgradeWorkload is a Deployment spread over the three centers (the
// control-plane servers' kubelets take pods too) behind a Service on a
// load-balancer VIP every node announces, with a PodDisruptionBudget that
// lets one pod go at a time. The pods stop gracefully: a preStop sleep
// outlasts the endpoint's removal from every kube-proxy. Readiness is
// checked every second and lost after three failures in a row (one probe
// slower than its 1 s timeout on a busy lab machine is no outage); a pod
// that is drained leaves the endpoints at once, by its deletion.
const upgradeWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: upgrade-web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: upgrade-web}}
  template:
    metadata: {labels: {app: upgrade-web}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: upgrade-web}}}
      terminationGracePeriodSeconds: 15
      containers:
        - name: web
          image: ` + installer.ProbeImage + `
          imagePullPolicy: Never
          args: [serve, --listen, ":8080"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /whoami, port: 8080}, periodSeconds: 1, failureThreshold: 3}
          lifecycle: {preStop: {sleep: {seconds: 5}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: upgrade-web, namespace: default}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: upgrade-web}}
---
apiVersion: v1
kind: Service
metadata: {name: upgrade-web, namespace: default}
spec:
  selector: {app: upgrade-web}
  externalIPs: [@VIP@]
  ports: [{port: 80, targetPort: 8080}]
`

// probeSeries is one prober's tally.
type probeSeries struct {
	Name       string
	OK, Failed int
	// Retried counts the probes whose connection was reset in flight and
	// that answered on the one immediate retry, as client-go retries a
	// GET: when the routers' ECMP set for a VIP changes (a server's
	// announcement withdrawn or back), a flow in flight may be hashed to
	// another server, which resets it. A probe is Failed only when the
	// retry fails too.
	Retried int
	// LastError is when and how the last probe failed.
	LastError string
	// LongestGap is the longest time between two answered probes.
	LongestGap time.Duration
	FirstError string
	// Windows are the runs of failed probes: when each began and ended,
	// how many failed and how (errors by kind), and what Diag said when
	// it began.
	Windows []string
	// Diag, when set, is asked what the routers know when a run of
	// failures begins (it runs apart from the probe).
	Diag   func() string
	lastOK time.Time
	window *probeWindow
}

// probeWindow is a run of failed probes in progress.
type probeWindow struct {
	start, last time.Time
	errs        map[string]int
	diag        chan string
}

func (s *probeSeries) record(at time.Time, err error) {
	if err != nil {
		s.Failed++
		s.LastError = at.Format("15:04:05.000") + " " + err.Error()
		if s.FirstError == "" {
			s.FirstError = at.Format("15:04:05.000") + " " + err.Error()
		}
		if s.window == nil {
			s.window = &probeWindow{start: at, errs: map[string]int{}}
			if s.Diag != nil {
				s.window.diag = make(chan string, 1)
				go func(ch chan<- string) { ch <- s.Diag() }(s.window.diag)
			}
		}
		s.window.last = at
		s.window.errs[errorKind(err)]++
		return
	}
	s.closeWindow(at)
	s.OK++
	if !s.lastOK.IsZero() && at.Sub(s.lastOK) > s.LongestGap {
		s.LongestGap = at.Sub(s.lastOK)
	}
	s.lastOK = at
}

// closeWindow ends a run of failures at the first answered probe (at) or
// when the probes stop (at is zero).
func (s *probeSeries) closeWindow(at time.Time) {
	w := s.window
	if w == nil {
		return
	}
	s.window = nil
	end := "the end of the probes"
	if !at.IsZero() {
		end = at.Format("15:04:05.000") + fmt.Sprintf(" (%v)", at.Sub(w.start).Round(time.Millisecond))
	}
	n := 0
	var kinds []string
	for k, c := range w.errs {
		n += c
		kinds = append(kinds, fmt.Sprintf("%d× %s", c, k))
	}
	slices.Sort(kinds)
	r := fmt.Sprintf("%s to %s: %d failed: %s", w.start.Format("15:04:05.000"), end, n, strings.Join(kinds, "; "))
	if w.diag != nil {
		select {
		case d := <-w.diag:
			r += "\n    when it began: " + strings.ReplaceAll(strings.TrimSpace(d), "\n", "\n    ")
		case <-time.After(10 * time.Second):
			r += "\n    when it began: (no answer from the routers in 10s)"
		}
	}
	s.Windows = append(s.Windows, r)
}

// errorKind is an error without what changes from probe to probe (ports,
// addresses of the client side).
func errorKind(err error) string {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &oe) && oe.Err != nil:
		return oe.Op + ": " + oe.Err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

func (s *probeSeries) String() string {
	r := fmt.Sprintf("%-26s %6d ok %4d failed, longest gap %v", s.Name, s.OK, s.Failed, s.LongestGap.Round(time.Millisecond))
	if s.Retried > 0 {
		r += fmt.Sprintf(", %d reset in flight and answered on retry", s.Retried)
	}
	if s.FirstError != "" {
		r += " (first failure " + s.FirstError + "; last " + s.LastError + ")"
	}
	return r
}

// upgradeProbes run while an upgrade runs: the API's /readyz through the
// VIP and the Service from outside the racks (the lab's core router) every
// 100 ms, each on a new connection (a request lands where the routers send
// it now; one reset in flight is retried at once, as client-go retries a
// GET, and counted apart: probeSeries.Retried), and etcd writes through its client (every member as endpoint)
// whose acknowledgements are checked afterwards.
type upgradeProbes struct {
	API, Service, Etcd probeSeries
	acked              []string
	stop               context.CancelFunc
	wg                 sync.WaitGroup
	mu                 sync.Mutex
}

// startUpgradeProbes starts the probes (no Service probe when serviceURL
// is empty).
func startUpgradeProbes(t testing.TB, ctx context.Context, k *kubeLab, e *installer.Engine, serviceURL string) *upgradeProbes {
	t.Helper()
	p := &upgradeProbes{API: probeSeries{Name: "API /readyz via the VIP"}, Service: probeSeries{Name: "Service via its LB VIP"},
		Etcd: probeSeries{Name: "etcd writes"}}
	svcVIP := ""
	if u, err := url.Parse(serviceURL); err == nil {
		svcVIP = u.Hostname()
	}
	p.API.Diag = func() string { return k.routerPaths(e.IPs().APIVIP.String()) }
	p.Service.Diag = func() string { return k.routerPaths(svcVIP) }
	ctx, p.stop = context.WithCancel(ctx)
	kc, err := e.AdminKubeconfig("")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rc.TLSClientConfig.CAData) {
		t.Fatal("the admin kubeconfig holds no CA certificate")
	}
	// Every request leaves from the core router's namespace, outside the
	// racks: it reaches a VIP through the core's route to the TORs.
	cores := k.lab.Cores()
	if len(cores) == 0 {
		t.Fatal("the lab has no core router to probe from")
	}
	core := cores[0].NS
	d := &net.Dialer{Timeout: time.Second}
	fresh := func(tc *tls.Config) *http.Client {
		return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tc, Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return core.DialContext(ctx, d, network, addr)
			}}}
	}
	apiClient := fresh(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	svcClient := fresh(nil)
	get := func(s *probeSeries, c *http.Client, url string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if errors.Is(err, syscall.ECONNRESET) {
			p.mu.Lock()
			s.Retried++
			p.mu.Unlock()
			resp, err = c.Do(req)
		}
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
	every := func(s *probeSeries, f func() error) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				err := f()
				if ctx.Err() != nil {
					return
				}
				p.mu.Lock()
				s.record(time.Now(), err)
				p.mu.Unlock()
			}
		}()
	}
	vip := "https://" + net.JoinHostPort(e.IPs().APIVIP.String(), fmt.Sprint(installer.APIPort)) + "/readyz"
	every(&p.API, func() error { return get(&p.API, apiClient, vip) })
	if serviceURL != "" {
		every(&p.Service, func() error { return get(&p.Service, svcClient, serviceURL) })
	}
	ep, err := e.EtcdPKI(false)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := e.EtcdClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	every(&p.Etcd, func() error {
		n++
		key := fmt.Sprintf("/tricenter-upgrade-probe/%06d", n)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := cli.KV().Put(wctx, key, "v")
		if err == nil {
			p.mu.Lock()
			p.acked = append(p.acked, key)
			p.mu.Unlock()
		}
		return err
	})
	t.Cleanup(func() {
		p.stop()
		p.wg.Wait()
		_ = cli.Close()
	})
	return p
}

// upgradeTimeline are the lines of an upgrade's log (text format) that
// say what it did when: steps, holds, restarts, drains, the apply after.
func upgradeTimeline(log string) string {
	var timeline []string
	for _, l := range strings.Split(log, "\n") {
		for _, w := range []string{"Upgrad", "Holding", "Releas", "Restarting", "Draining", "Cordon", "Uncordon", "Applying", "Waiting for the control plane", "Applied", "Gate", "kube-proxy"} {
			if strings.Contains(l, w) {
				timeline = append(timeline, l)
				break
			}
		}
	}
	return strings.Join(timeline, "\n")
}

// windows are the probes' runs of failures, one per line ("" when none
// failed).
func (p *upgradeProbes) windows() string {
	var b strings.Builder
	for _, s := range []*probeSeries{&p.API, &p.Service, &p.Etcd} {
		for _, w := range s.Windows {
			fmt.Fprintf(&b, "%s: %s\n", s.Name, w)
		}
	}
	return b.String()
}

// routerPaths is what the lab router's zebra and bgpd know of the /32 to
// addr now.
func (k *kubeLab) routerPaths(addr string) string {
	r := k.lab.Router()
	if r == nil {
		return "(the lab has no router)"
	}
	var b strings.Builder
	for _, c := range []struct{ daemon, cmd string }{
		{"zebra", "show ip route " + addr + "/32"},
		{"bgpd", "show bgp ipv4 unicast " + addr + "/32"},
	} {
		out, err := r.Vty(c.daemon, c.cmd)
		fmt.Fprintf(&b, "%s: %s", c.cmd, out)
		if err != nil {
			fmt.Fprintf(&b, " (%v)", err)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// finish stops the probes and counts the acknowledged etcd writes that
// etcd no longer has (it must be none).
func (p *upgradeProbes) finish(ctx context.Context, e *installer.Engine) (lost int, err error) {
	p.stop()
	p.wg.Wait()
	for _, s := range []*probeSeries{&p.API, &p.Service, &p.Etcd} {
		s.closeWindow(time.Time{})
	}
	ep, err := e.EtcdPKI(false)
	if err != nil {
		return 0, err
	}
	cli, err := e.EtcdClient(ep)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := cli.KV().Get(rctx, "/tricenter-upgrade-probe/", clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("reading the probe keys back: %w", err)
	}
	have := map[string]bool{}
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = true
	}
	for _, k := range p.acked {
		if !have[k] {
			lost++
		}
	}
	return lost, nil
}

// upgradeVIP is the load-balancer VIP of the scenario's Service: the
// first of spec.network.loadBalancerVIPs.
func upgradeVIP(t testing.TB, c *inventory.Cluster) netip.Addr {
	t.Helper()
	if len(c.Spec.Network.LoadBalancerVIPs) == 0 {
		t.Fatal("the lab inventory has no spec.network.loadBalancerVIPs: the upgrade scenario's Service needs one")
	}
	a, err := netip.ParseAddr(c.Spec.Network.LoadBalancerVIPs[0])
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// deployUpgradeWorkload applies upgradeWorkload and waits until its pods
// are Ready and the Service answers through its VIP from this machine.
func deployUpgradeWorkload(t testing.TB, ctx context.Context, k *kubeLab, kubeconfig string, vip netip.Addr) string {
	t.Helper()
	if err := k.lab.RouteFromHost(ctx, netip.PrefixFrom(vip, 32)); err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(k.arts, artifacts.DefaultName("kubectl"))
	manifest := filepath.Join(k.dir, "upgrade-workload.yaml")
	if err := os.WriteFile(manifest, []byte(strings.ReplaceAll(upgradeWorkload, "@VIP@", vip.String())), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"apply", "-f", manifest},
		{"-n", "default", "rollout", "status", "deployment/upgrade-web", "--timeout", "3m"},
	} {
		out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	url := "http://" + vip.String() + "/whoami"
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	if err := pollUntil(ctx, 2*time.Minute, func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatalf("the Service through %s: %v", url, err)
	}
	return url
}

// upgradeRecord reads the CLI's record of the upgrade in progress (nil
// when there is none).
func upgradeRecord(stateDir, cluster string) (*upgrade.Record, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, cluster, installer.UpgradeFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r upgrade.Record
	return &r, json.Unmarshal(b, &r)
}

// checkRollingUpgrade upgrades the lab from upgradeFromKubernetes and
// upgradeFromEtcd to the inventory's releases with the CLI, killed with
// SIGKILL once a few steps are done and run again, which resumes; probes
// run throughout. It returns them for the caller to judge.
func checkRollingUpgrade(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, kubeconfig string, c *cli) *upgradeProbes {
	t.Helper()
	target := k.cluster(t)
	url := deployUpgradeWorkload(t, ctx, k, kubeconfig, upgradeVIP(t, target))
	plan := c.start(t, ctx, "upgrade", "--dry-run")
	if err := plan.wait(ctx); err != nil {
		t.Fatalf("tricenter upgrade --dry-run: %v\n%s", err, plan.stderr())
	}
	t.Logf("the upgrade plan:\n%s", plan.out.String())
	for _, want := range []string{upgradeFromKubernetes, target.Spec.Kubernetes.Version, upgradeFromEtcd, target.Spec.Etcd.Version} {
		if !strings.Contains(plan.out.String(), want) {
			t.Errorf("the plan does not mention %s", want)
		}
	}
	probes := startUpgradeProbes(t, ctx, k, e, url)
	start := time.Now()
	first := c.start(t, ctx, "upgrade", "--yes", "--log-format", "text")
	// Killed once three steps are recorded done (etcd members).
	var done []string
	if err := pollUntil(ctx, 10*time.Minute, func() error {
		select {
		case <-first.done:
			return fmt.Errorf("the upgrade ended (%w) before it could be killed:\n%s", first.err, first.stderr())
		default:
		}
		r, err := upgradeRecord(k.stateDir, target.Metadata.Name)
		if err != nil || r == nil || len(r.Completed) < 3 {
			return fmt.Errorf("not 3 steps done yet (%w)", err)
		}
		done = r.Completed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.wait(ctx)
	t.Logf("killed the upgrade after %v with %d steps done (%s)", time.Since(start).Round(time.Millisecond), len(done), strings.Join(done, ", "))
	second := c.start(t, ctx, "upgrade", "--yes", "--log-format", "text")
	if err := second.wait(ctx); err != nil {
		t.Fatalf("the resumed upgrade: %v\n%s\n%s", err, second.out.String(), second.stderr())
	}
	took := time.Since(start)
	// The run's timeline, to set the probes' failures against.
	t.Logf("the resumed run's timeline:\n%s", upgradeTimeline(second.stderr()))
	if !strings.Contains(second.out.String(), "Upgrade in progress since") {
		t.Errorf("the second run does not say it resumed:\n%s", second.out.String())
	}
	lost, err := probes.finish(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upgrade (killed once, resumed) took %v:\n  %s\n  %s\n  %s; %d acknowledged writes, %d lost",
		took.Round(time.Second), probes.API.String(), probes.Service.String(), probes.Etcd.String(), len(probes.acked), lost)
	if lost > 0 {
		t.Errorf("%d acknowledged etcd writes are gone after the upgrade", lost)
	}
	if w := probes.windows(); w != "" {
		t.Logf("the probes' failures:\n%s", w)
	}
	if r, err := upgradeRecord(k.stateDir, target.Metadata.Name); err != nil || r != nil {
		t.Errorf("the upgrade record is still there (%v): %+v", err, r)
	}
	checkNodeVersions(t, ctx, k, kubeconfig, target.Spec.Kubernetes.Version)
	return probes
}

// checkNodeVersions: kubectl lists every node Ready with the kubelet
// release want.
func checkNodeVersions(t *testing.T, ctx context.Context, k *kubeLab, kubeconfig, want string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, filepath.Join(k.arts, artifacts.DefaultName("kubectl")), "--kubeconfig", kubeconfig,
		"get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion}{\"\\n\"}{end}").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get nodes: %v\n%s", err, out)
	}
	lines := strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | "))
	var bad []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[1] != want {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 || len(lines) == 0 {
		t.Errorf("nodes not at %s: %v\n%s", want, bad, out)
	}
	t.Logf("kubectl get nodes: every node at %s", want)
}

// atReleases is c installing the given releases.
func atReleases(c *inventory.Cluster, kube, etcdRelease string) *inventory.Cluster {
	c.Spec.Kubernetes.Version, c.Spec.Etcd.Version = kube, etcdRelease
	return c
}
