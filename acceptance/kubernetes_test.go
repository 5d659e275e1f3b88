package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// kubeLab is the nspawn lab of acceptance/testdata/nspawn-lab.yaml with
// FRR routing pod CIDRs and the API VIP, and the engine pointed at it.
type kubeLab struct {
	lab      *nspawn.Lab
	dir      string
	arts     string
	inv      []byte // the inventory with run-time paths
	stateDir string
	log      *slog.Logger
}

// newWorker is left out of the first apply and added later.
const newWorker = "dc2-r01-w01"

// staleWorker is powered off and rebooted under the health checks.
const staleWorker = "dc1-r01-w01"

func startKubeLab(t testing.TB) *kubeLab { return startKubeLabWith(t, kubeLabOptions{}) }

// kubeLabOptions change which machines the lab has and starts.
type kubeLabOptions struct {
	// Off are inventory servers whose machines are not started.
	Off []string
	// Spares are machines the inventory does not list (replacement
	// servers a test adds later), in rack SpareRack, not started.
	Spares    []inventory.Server
	SpareRack string
}

func startKubeLabWith(t testing.TB, o kubeLabOptions) *kubeLab {
	t.Helper()
	if err := nspawn.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab: %w", err))
	}
	testenv.Exclusive(t, "the Kubernetes lab")
	root := repoRoot(t)
	cache := filepath.Join(root, ".cache")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	k := &kubeLab{dir: t.TempDir(), arts: filepath.Join(cache, "artifacts"),
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	k.stateDir = filepath.Join(k.dir, "state")
	start := time.Now()
	build := exec.CommandContext(ctx, filepath.Join(root, "hack/artifacts/build.sh"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make artifacts: %v\n%s", err, out)
	}
	t.Logf("artifacts ready in %v", time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(filepath.Join(root, "acceptance/testdata/nspawn-lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(".cache/nspawn-lab/id_ed25519", filepath.Join(k.dir, "id_ed25519"),
		".cache/nspawn-lab/known_hosts", filepath.Join(k.dir, "known_hosts"),
		"artifactDir: .cache/artifacts", "artifactDir: "+k.arts).Replace(string(b))
	// The lab schedules etcd snapshots (labSnapshots), in the inventory
	// itself: the CLI runs of the test read the same file.
	if !strings.Contains(s, "\n  etcd:\n") {
		t.Fatal("acceptance/testdata/nspawn-lab.yaml: no spec.etcd to schedule snapshots in")
	}
	s = strings.Replace(s, "\n  etcd:\n", fmt.Sprintf("\n  etcd:\n    snapshots: {every: %s, keep: %d}\n", labSnapshots.Every, labSnapshots.Keep), 1)
	k.inv = []byte(s)
	c, err := nspawn.ParseInventory(k.inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Kubernetes.NodeProfile != inventory.NodeProfileNspawn {
		t.Fatalf("acceptance/testdata/nspawn-lab.yaml: spec.kubernetes.nodeProfile is %q, want nspawn", c.Spec.Kubernetes.NodeProfile)
	}
	var boot []string
	if len(o.Off) > 0 || len(o.Spares) > 0 {
		for _, h := range c.Hosts() {
			if !slices.Contains(o.Off, h.Name) {
				boot = append(boot, h.Name)
			}
		}
		r := c.Rack(o.SpareRack)
		if len(o.Spares) > 0 && r == nil {
			t.Fatalf("spare rack %q is not in the lab inventory", o.SpareRack)
		}
		if r != nil {
			r.Servers = append(r.Servers, o.Spares...)
			c.SetDefaults()
		}
	}
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, k.log)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	// A core router outside the racks (peering with the lab router, which
	// plays every TOR): the upgrade scenario asks its Service and the API
	// from there, as a client beyond the datacenter's core would.
	k.lab, err = nspawn.Up(ctx, nspawn.Config{Cluster: c, Rootfs: rootfs, Logger: k.log, Hosts: boot,
		Dir:         filepath.Join(cache, "nspawn", "machines", "kube-"+filepath.Base(filepath.Dir(k.dir))),
		CoreRouters: []nspawn.CoreRouter{{Name: "core-a", Site: "site-a", ASN: 65000}}, CoreTransit: netip.MustParsePrefix("198.19.118.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	t.Logf("lab: %d machines up in %v", len(k.lab.Machines()), time.Since(start).Round(time.Millisecond))
	// This process is the operator's workstation: the API VIP, services
	// and pods are reached through the lab's router, as in a datacenter.
	if err := k.lab.RouteClusterFromHost(ctx); err != nil {
		t.Fatal(err)
	}
	return k
}

// cluster is the lab inventory without the servers in drop.
func (k *kubeLab) cluster(t testing.TB, drop ...string) *inventory.Cluster {
	t.Helper()
	c, lines, err := inventory.Parse(k.inv)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Spec.Racks {
		r := &c.Spec.Racks[i]
		r.Servers = slices.DeleteFunc(r.Servers, func(s inventory.Server) bool { return slices.Contains(drop, s.Name) })
	}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (k *kubeLab) engine(t testing.TB, c *inventory.Cluster) *installer.Engine {
	t.Helper()
	return k.engineAt(t, c, k.stateDir)
}

// engineAt is an engine over the state directory dir.
func (k *kubeLab) engineAt(t testing.TB, c *inventory.Cluster, dir string) *installer.Engine {
	t.Helper()
	return k.engineLogging(t, c, dir, k.log)
}

// engineLogging is engineAt logging to log.
func (k *kubeLab) engineLogging(t testing.TB, c *inventory.Cluster, dir string, log *slog.Logger) *installer.Engine {
	t.Helper()
	st, err := state.Open(dir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := installer.New(installer.Config{Cluster: c, Store: st, Logger: log,
		AgentBinary: filepath.Join(k.arts, "tricenter-bgp")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func failedGates(r *installer.Result) []string {
	var out []string
	for _, g := range r.Gates {
		if !g.OK && g.NotRun == "" {
			out = append(out, g.Name+": "+g.Detail)
		}
	}
	return out
}

// TestKubernetes applies the whole cluster on the lab from scratch and
// checks every gate, kubectl's view, a no-op re-apply, adding and removing
// a worker (touching only it), and reset.
func TestKubernetes(t *testing.T) {
	k := startKubeLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	timings := map[string]time.Duration{}
	step := func(name string, f func()) {
		start := time.Now()
		f()
		timings[name] = time.Since(start)
		t.Logf("%s: %v", name, timings[name].Round(time.Millisecond))
	}

	// The cluster is installed at the previous releases and upgraded to
	// the inventory's near the end (checkRollingUpgrade).
	from := func(c *inventory.Cluster) *inventory.Cluster {
		return atReleases(c, upgradeFromKubernetes, upgradeFromEtcd)
	}
	e := k.engine(t, from(k.cluster(t, newWorker)))
	step("cold apply", func() {
		res, err := e.Apply(ctx, installer.Options{})
		if err != nil {
			t.Fatalf("apply: %v\ngates failed: %v", err, failedGates(res))
		}
		if len(res.Gates) < 6 || len(failedGates(res)) > 0 {
			t.Fatalf("gates: %+v", res.Gates)
		}
		for _, g := range res.Gates {
			t.Logf("gate %s: %s (%v)", g.Name, g.Detail, g.Took.Round(time.Millisecond))
		}
		logTimings(t, "cold apply", res)
	})
	kubeconfig := filepath.Join(k.dir, "admin.conf")
	kc, err := e.AdminKubeconfig("")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	checkKubectlNodes(t, ctx, k, kubeconfig, e.Cluster(), newWorker)
	checkRouterRoutes(t, k, e)
	step("etcd snapshots: one store per center, from the other site, sealed, taken by the timer", func() { checkSnapshotSchedule(t, ctx, e) })
	step("security defaults", func() { checkSecurityDefaults(t, ctx, e, staleWorker) })
	step("etcd: own user, separate peer CA", func() { checkEtcdSecurity(t, ctx, e) })
	step("identities: admin through a group, break-glass, kubelet client", func() { checkIdentities(t, ctx, k, e, kubeconfig) })
	step("kubelet CSR for another node's name refused", func() { checkKubeletCSR(t, ctx, k, e) })
	step("Secrets encryption key rotated with the API serving", func() { checkKeyRotation(t, ctx, k, e) })
	step("leaf certificates renewed with the API serving", func() { checkLeafRenewal(t, ctx, k, e) })
	step("CA guard: foreign, empty and partial states refused", func() {
		checkCAGuard(t, ctx, k, from(k.cluster(t, newWorker)), e)
	})

	step("no-op re-apply", func() {
		res, err := e.Apply(ctx, installer.Options{})
		if err != nil {
			t.Fatalf("re-apply: %v", err)
		}
		if !res.Converged() {
			t.Fatalf("re-apply changed things: hosts %v, API %v", res.Changes, res.APIChanges)
		}
		if f := failedGates(res); len(f) > 0 {
			t.Fatalf("gates after a no-op re-apply: %v", f)
		}
		for _, g := range res.Gates {
			if strings.HasPrefix(g.Name, "pod to pod") && g.NotRun == "" {
				t.Errorf("a no-op re-apply created gate pods")
			}
		}
		logTimings(t, "no-op re-apply", res)
	})

	step("an apply relies on its own plan, and on nothing older", func() {
		checkWalkOnce(t, ctx, k, e, staleWorker)
	})

	step("add-on drift repaired by apply", func() {
		checkAddonDriftRepaired(t, ctx, k, e, kubeconfig)
	})

	step("a powered-off or rebooted node is not Ready by its stale word", func() {
		checkStaleNodeNotTrusted(t, ctx, k, e, staleWorker)
		healthy(t, ctx, e, 3*time.Minute, "after the node came back")
	})

	full := k.engine(t, from(k.cluster(t)))
	step("add one worker", func() {
		res, err := full.Apply(ctx, installer.Options{})
		if err != nil {
			t.Fatalf("apply with %s: %v", newWorker, err)
		}
		for h, ch := range res.Changes {
			if h != newWorker {
				t.Errorf("adding %s touched %s: %v", newWorker, h, ch)
			}
		}
		if len(res.Changes[newWorker]) == 0 {
			t.Errorf("adding %s changed nothing on it", newWorker)
		}
		logTimings(t, "add one worker", res)
	})
	checkKubectlNodes(t, ctx, k, kubeconfig, full.Cluster())

	step("LoadBalancer Services from the core router", func() {
		checkLoadBalancers(t, ctx, k, full,
			map[string]string{"dc1": staleWorker, "dc2": newWorker, "dc3": "dc3-r01-s01"},
			[]string{staleWorker, newWorker})
	})

	step("remove the worker", func() {
		res, err := full.Reset(ctx, installer.Options{Servers: []string{newWorker}})
		if err != nil {
			t.Fatalf("removing %s: %v", newWorker, err)
		}
		for h := range res.Changes {
			if h != newWorker {
				t.Errorf("removing %s touched %s", newWorker, h)
			}
		}
		cidr, _ := full.IPs().PodCIDR(newWorker)
		if err := pollUntil(ctx, 30*time.Second, func() error {
			routes, err := k.lab.BGPRoutes()
			if err != nil {
				return err
			}
			if _, ok := routes[cidr.String()]; ok {
				return fmt.Errorf("the router still has %s", cidr)
			}
			return nil
		}); err != nil {
			t.Errorf("route of the removed worker: %v", err)
		}
	})
	e = k.engine(t, from(k.cluster(t, newWorker)))

	for _, center := range []string{"dc3", "dc1", "dc2"} {
		// A drill starts from a whole cluster: the center of the last
		// drill has its etcd members back when that drill ends, but its
		// API servers may still be starting (readyz 500 until their
		// post-start hooks finish), and the VIP may hash to them.
		step("healthy before drill "+center, func() {
			if err := pollUntil(ctx, 3*time.Minute, func() error {
				st, err := e.Status(ctx)
				if err != nil {
					return err
				}
				if !st.OK() {
					return fmt.Errorf("%s", strings.Join(st.Problems, "; "))
				}
				return nil
			}); err != nil {
				t.Fatalf("the cluster is not healthy before the drill of %s: %v", center, err)
			}
		})
		step("drill "+center, func() { drillCenter(t, ctx, k, e, center) })
	}

	step("rolling upgrade "+upgradeFromKubernetes+" → "+k.cluster(t).Spec.Kubernetes.Version+" (CLI killed once, resumed)", func() {
		healthy(t, ctx, e, 3*time.Minute, "before the upgrade")
		target := k.cluster(t, newWorker)
		checkRollingUpgrade(t, ctx, k, e, kubeconfig, buildCLI(t, ctx, k, newWorker))
		e = k.engine(t, target)
		healthy(t, ctx, e, 3*time.Minute, "after the upgrade")
		res, err := e.Apply(ctx, installer.Options{})
		if err != nil {
			t.Fatalf("apply after the upgrade: %v", err)
		}
		if !res.Converged() {
			t.Errorf("the apply after the upgrade changed things: hosts %v, API %v", res.Changes, res.APIChanges)
		}
	})

	step("one writer at a time (CLI + CLI, kill -9 mid etcd phase)", func() {
		healthy(t, ctx, e, 3*time.Minute, "before the lock checks")
		checkOneWriter(t, ctx, k, buildCLI(t, ctx, k, newWorker))
	})

	step("short certificate lifetimes: status flags them, terraform plans and applies the renewal", func() {
		healthy(t, ctx, e, 3*time.Minute, "before the short lifetimes")
		e = checkShortLifetimes(t, ctx, k, k.cluster(t, newWorker))
	})

	// Last before the reset: it replaces every certificate of the cluster,
	// the short-lived ones too, at the inventory's default lifetime.
	step("Kubernetes CA rotated with the API serving", func() {
		healthy(t, ctx, e, 3*time.Minute, "before the CA rotation")
		checkCARotation(t, ctx, k, e)
		checkDefaultLifetimes(t, ctx, e)
	})

	step("etcd snapshots pruned to keep", func() { checkSnapshotsPruned(t, ctx, e) })
	step("reset", func() {
		if _, err := e.Reset(ctx, installer.Options{}); err != nil {
			t.Fatalf("reset: %v", err)
		}
		plan, err := e.PlanReset(ctx, installer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Changes) != 0 {
			t.Fatalf("after reset the hosts still hold: %v", plan.Changes)
		}
	})
	var names []string
	for n := range timings {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t.Logf("timing %-20s %v", n, timings[n].Round(time.Millisecond))
	}
}

// checkAddonDriftRepaired: CoreDNS scaled to 0 and its Corefile edited
// out of band with kubectl are put back by the next apply (add-ons are
// applied server-side on every apply), which lists exactly those two
// objects among its API changes and touches no host; CoreDNS gets its
// replicas Ready again, and the apply after that changes nothing.
func checkAddonDriftRepaired(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, kubeconfig string) {
	t.Helper()
	kubectl := func(args ...string) string {
		t.Helper()
		args = append([]string{"--kubeconfig", kubeconfig, "--namespace", addons.Namespace}, args...)
		out, err := exec.CommandContext(ctx, filepath.Join(k.arts, artifacts.DefaultName("kubectl")), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args[4:], " "), err, out)
		}
		return string(out)
	}
	deployment, configMap := "deployment/"+addons.CoreDNSName, "configmap/"+addons.CoreDNSName
	replicas := kubectl("get", deployment, "-o", "jsonpath={.spec.replicas}")
	corefile := kubectl("get", configMap, "-o", "jsonpath={.data.Corefile}")
	if replicas == "0" || replicas == "" || !strings.Contains(corefile, "cache 30\n") {
		t.Fatalf("CoreDNS before the edits: replicas %q, Corefile:\n%s", replicas, corefile)
	}

	kubectl("scale", deployment, "--replicas=0")
	patch, err := json.Marshal(map[string]any{"data": map[string]string{
		"Corefile": strings.Replace(corefile, "cache 30\n", "cache 300\n", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	kubectl("patch", configMap, "--type=merge", "--patch", string(patch))
	if got := kubectl("get", deployment, "-o", "jsonpath={.spec.replicas}"); got != "0" {
		t.Fatalf("kubectl scale left %s replicas", got)
	}
	if got := kubectl("get", configMap, "-o", "jsonpath={.data.Corefile}"); !strings.Contains(got, "cache 300\n") {
		t.Fatalf("kubectl patch left the Corefile:\n%s", got)
	}

	res, err := e.Apply(ctx, installer.Options{})
	if err != nil {
		t.Fatalf("apply after the out-of-band edits: %v\ngates failed: %v", err, failedGates(res))
	}
	repaired := slices.Sorted(slices.Values(res.APIChanges))
	if want := []string{"updated ConfigMap " + addons.Namespace + "/" + addons.CoreDNSName,
		"updated Deployment " + addons.Namespace + "/" + addons.CoreDNSName}; !slices.Equal(repaired, want) {
		t.Errorf("the repairing apply listed API changes %q, want %q", repaired, want)
	}
	if len(res.Changes) > 0 {
		t.Errorf("repairing the add-ons touched hosts: %v", res.Changes)
	}
	if f := failedGates(res); len(f) > 0 {
		t.Errorf("gates after the repair: %v", f)
	}
	if got := kubectl("get", deployment, "-o", "jsonpath={.spec.replicas}"); got != replicas {
		t.Errorf("CoreDNS has %s replicas after the apply, want %s", got, replicas)
	}
	if got := kubectl("get", configMap, "-o", "jsonpath={.data.Corefile}"); got != corefile {
		t.Errorf("the Corefile after the apply is not tricenter's:\n%s\nwant:\n%s", got, corefile)
	}
	if err := pollUntil(ctx, 3*time.Minute, func() error {
		if got := kubectl("get", deployment, "-o", "jsonpath={.status.readyReplicas}"); got != replicas {
			return fmt.Errorf("%q of %s replicas Ready", got, replicas)
		}
		return nil
	}); err != nil {
		t.Errorf("CoreDNS after the repair: %v", err)
	}

	res, err = e.Apply(ctx, installer.Options{})
	if err != nil {
		t.Fatalf("apply after the repair: %v", err)
	}
	if !res.Converged() {
		t.Errorf("the apply after the repair changed things: hosts %v, API %v", res.Changes, res.APIChanges)
	}
}

func pollUntil(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkKubectlNodes runs the real kubectl with the admin kubeconfig.
func checkKubectlNodes(t *testing.T, ctx context.Context, k *kubeLab, kubeconfig string, c *inventory.Cluster, absent ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(k.arts, artifacts.DefaultName("kubectl")), "--kubeconfig", kubeconfig, "get", "nodes",
		"--no-headers", "-L", "topology.kubernetes.io/zone,tricenter.io/rack")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get nodes: %v\n%s", err, out)
	}
	t.Logf("kubectl get nodes:\n%s", out)
	rows := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) >= 7 {
			rows[f[0]] = f
		}
	}
	for _, h := range c.Hosts() {
		f, ok := rows[h.Name]
		if !ok {
			t.Errorf("kubectl does not list %s", h.Name)
			continue
		}
		if f[1] != "Ready" && !strings.HasPrefix(f[1], "Ready,") {
			t.Errorf("%s is %s", h.Name, f[1])
		}
		if f[len(f)-2] != h.Center.Name || f[len(f)-1] != h.Rack.Name {
			t.Errorf("%s: zone/rack %s/%s, want %s/%s", h.Name, f[len(f)-2], f[len(f)-1], h.Center.Name, h.Rack.Name)
		}
	}
	for _, a := range absent {
		if _, ok := rows[a]; ok {
			t.Errorf("kubectl lists %s, which is not in the inventory", a)
		}
	}
}

// checkRouterRoutes: the lab's FRR learnt every pod CIDR and the API VIP
// by BGP.
func checkRouterRoutes(t *testing.T, k *kubeLab, e *installer.Engine) {
	t.Helper()
	routes, err := k.lab.BGPRoutes()
	if err != nil {
		t.Fatalf("router BGP table: %v", err)
	}
	want := []string{netip.PrefixFrom(e.IPs().APIVIP, 32).String()}
	for _, h := range e.Cluster().Hosts() {
		p, _ := e.IPs().PodCIDR(h.Name)
		want = append(want, p.String())
	}
	for _, w := range want {
		if _, ok := routes[w]; !ok {
			t.Errorf("the router has no BGP route to %s (has %d routes)", w, len(routes))
		}
	}
}

// drillCenter powers off every server of one center (a real cut) while
// etcd takes writes and the API is asked through the VIP.
func drillCenter(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, center string) {
	t.Helper()
	p, err := e.EtcdPKI(false)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	probes, err := e.DrillProbes(center)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := etcd.Drill(ctx, etcd.DrillOptions{Cluster: e.Cluster(), Placement: e.Placement(), Center: center,
		Client: cli, Power: labPower{k.lab}, Logger: k.log, Hold: 5 * time.Second, Probes: probes})
	if err != nil {
		t.Fatalf("drill %s: %v", center, err)
	}
	t.Logf("drill %s: %+v", center, rep)
	if len(rep.Probes) != len(probes) {
		t.Fatalf("drill %s: %d probe reports for %d probes", center, len(rep.Probes), len(probes))
	}
	// A dead server sends nothing: the routers drop its routes when the BGP
	// hold timer expires, and requests in flight to the lost etcd members
	// fail until raft and the clients move on. The API may pause for that
	// long, never longer; no surviving Node may turn NotReady.
	hold := time.Duration(e.Cluster().Spec.Network.BGP.HoldSeconds) * time.Second
	limit := hold + rep.ElectionTimeout + 5*time.Second
	for i, pr := range rep.Probes {
		t.Logf("drill %s: probe %q: %d attempts, %d failed, longest gap %v (last error: %s)",
			center, pr.Name, pr.Attempts, pr.Failures, pr.MaxGap.Round(time.Millisecond), pr.LastError)
		if pr.Attempts == 0 {
			t.Errorf("drill %s: probe %s never ran", center, pr.Name)
		}
		for _, pe := range pr.Errors {
			t.Logf("drill %s: probe %q: %d× from %v to %v after the loss: %s", center, pr.Name, pe.Count,
				pe.First.Sub(rep.LossAt).Round(time.Millisecond), pe.Last.Sub(rep.LossAt).Round(time.Millisecond), pe.Error)
		}
		if pr.MaxGap > limit {
			t.Errorf("drill %s: probe %s: no answer for %v (limit %v: BGP hold %v + election timeout %v + 5s)",
				center, pr.Name, pr.MaxGap, limit, hold, rep.ElectionTimeout)
			k.logControlPlane(t, ctx, e)
		}
		if np, ok := probes[i].(*installer.NodesProbe); ok && len(np.NotReady()) > 0 {
			t.Errorf("drill %s: surviving nodes turned NotReady: %v", center, np.NotReady())
		}
	}
	if rep.Lost != 0 || !rep.Verified {
		t.Errorf("drill %s: lost %d acknowledged writes (verified %v: %s)", center, rep.Lost, rep.Verified, rep.NotVerified)
	}
	// Restored, the leader is in production again (moved there when the
	// drill took production down).
	if l := rep.LeaderHome; l == nil || !l.Home || rep.LeaderMoveError != "" {
		t.Errorf("drill %s: leader after the restore: %+v (moved from %q: %s)", center, l, rep.LeaderMovedFrom, rep.LeaderMoveError)
	} else {
		t.Logf("drill %s: leader after the restore %s (%s), moved from %q in %v", center, l.Leader, l.LeaderCenter, rep.LeaderMovedFrom, rep.LeaderMoveTook.Round(time.Millisecond))
	}
}

func logTimings(t testing.TB, what string, r *installer.Result) {
	var parts []string
	for _, x := range r.Timings {
		parts = append(parts, fmt.Sprintf("%s %v", x.Component, x.Took.Round(time.Millisecond)))
	}
	var gates time.Duration
	for _, g := range r.Gates {
		gates += g.Took
	}
	t.Logf("%s: %s, gates %v", what, strings.Join(parts, ", "), gates.Round(time.Millisecond))
}

// logControlPlane logs each API server's /readyz (Engine.Status), the lab
// router's paths to the API VIP, and for each control-plane server when its
// kube-apiserver last started, how often systemd restarted it and what its
// BGP agent said about the VIP lately: what a failed API probe needs to be
// explained.
func (k *kubeLab) logControlPlane(t *testing.T, ctx context.Context, e *installer.Engine) {
	t.Helper()
	m := e.Manager(true)
	defer m.Close()
	var names []string
	for _, cp := range e.Placement().ControlPlane {
		names = append(names, cp.Name)
	}
	if st, err := e.Status(ctx); err != nil {
		t.Logf("status: %v", err)
	} else {
		for _, a := range st.API {
			t.Logf("API %s %s: ready %v: %s", a.Name, a.URL, a.Ready, a.Detail)
		}
	}
	vip := e.IPs().APIVIP.String()
	if r := k.lab.Router(); r != nil {
		for _, c := range []struct{ daemon, cmd string }{
			{"bgpd", "show bgp ipv4 unicast " + vip + "/32"},
			{"bgpd", "show bgp summary"},
			{"zebra", "show ip route " + vip + "/32"},
		} {
			out, err := r.Vty(c.daemon, c.cmd)
			t.Logf("lab router: %s (%v):\n%s", c.cmd, err, out)
		}
	}
	hosts, err := m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		t.Logf("control-plane servers: %v", err)
		return
	}
	for _, h := range hosts {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := h.Query(cctx, `systemctl show kube-apiserver -p ActiveEnterTimestamp -p NRestarts -p ExecMainStartTimestamp; `+
			`journalctl -u tricenter-bgp --since -3min --no-pager -o short-precise | grep -iE 'service|vip|withdraw|announc' | tail -n 12; `+
			`journalctl -u kube-apiserver --since -3min --no-pager -o short-precise | grep -iE 'start|stop|exit|fatal' | tail -n 8; true`)
		cancel()
		t.Logf("control-plane server %s (%v):\n%s", h.Name, err, out)
	}
}
