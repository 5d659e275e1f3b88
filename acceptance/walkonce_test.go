package acceptance

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
)

// hostComponents are the components that work on the servers over SSH.
var hostComponents = []installer.Component{installer.Etcd, installer.BGP, installer.ControlPlane, installer.Nodes}

// checkWalkOnce: an apply (Engine.PlanApply, what `tricenter apply` runs)
// relies on its own plan and on nothing older. On a converged cluster the
// apply walks none of the host components; a file changed by hand after
// that run is seen by the next run's plan; and a file changed between the
// plan and the apply of one run, on a server the apply walks, is caught
// there: the apply observes that server afresh before it changes anything
// on it.
func checkWalkOnce(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, worker string) {
	t.Helper()
	key, kh := filepath.Join(k.dir, "id_ed25519"), filepath.Join(k.dir, "known_hosts")
	onWorker := func(cmd string) string {
		t.Helper()
		out, err := labSSH(ctx, key, kh, k.lab.Machine(worker), cmd)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	mentions := func(r *installer.Result, path string) bool {
		for _, c := range r.Changes[worker] {
			if strings.Contains(c, " "+path+" ") || strings.HasSuffix(c, " "+path) {
				return true
			}
		}
		return false
	}
	planApply := func(what string, between func()) (plan, res *installer.Result) {
		t.Helper()
		start := time.Now()
		plan, res, err := e.PlanApply(ctx, installer.Options{}, func(*installer.Result) (bool, error) {
			if between != nil {
				between()
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%s: %v\ngates failed: %v", what, err, failedGates(res))
		}
		if f := failedGates(res); len(f) > 0 {
			t.Fatalf("%s: gates failed: %v", what, f)
		}
		t.Logf("%s: plan pending %v, apply reused %v, changed %d hosts, %v in all; ssh sessions: plan %s, apply %s", what,
			plan.Pending, res.Reused, len(res.Changes), time.Since(start).Round(time.Millisecond), sessions(plan), sessions(res))
		return plan, res
	}

	// 1. Converged: only the add-ons are pending (what they change through
	// the API is not known in a plan); the apply walks no host component
	// and every gate of theirs still holds.
	plan, res := planApply("converged", nil)
	if !slices.Equal(plan.Pending, []installer.Component{installer.Addons}) {
		t.Errorf("a plan of a converged cluster has pending %v, want only addons", plan.Pending)
	}
	if !slices.Equal(res.Reused, hostComponents) {
		t.Errorf("the apply walked again what its plan found converged: reused %v, want %v", res.Reused, hostComponents)
	}
	if !res.Converged() {
		t.Errorf("a converged cluster changed: hosts %v, API %v", res.Changes, res.APIChanges)
	}
	for _, id := range []string{installer.GateEtcd, installer.GateBGP, installer.GateControlPlane, installer.GateNodes} {
		if !slices.ContainsFunc(res.Gates, func(g installer.Gate) bool { return g.ID == id && g.OK }) {
			t.Errorf("gate %s did not run and hold after an apply that relied on its plan: %+v", id, res.Gates)
		}
	}

	// 2. Nothing carries over to the next run: a file changed by hand after
	// the run above is in the next plan, and its apply puts it back.
	onWorker("echo '# changed by hand after the last run' >> " + node.KubeProxyConfig)
	plan, res = planApply("a file changed after the last run", nil)
	if !mentions(plan, node.KubeProxyConfig) || !mentions(res, node.KubeProxyConfig) {
		t.Errorf("%s changed by hand on %s: plan %v, apply %v", node.KubeProxyConfig, worker, plan.Changes[worker], res.Changes[worker])
	}
	if !slices.Contains(plan.Pending, installer.Nodes) || slices.Contains(res.Reused, installer.Nodes) {
		t.Errorf("nodes changed on %s, yet pending %v and reused %v", worker, plan.Pending, res.Reused)
	}
	if want := []installer.Component{installer.Etcd, installer.BGP, installer.ControlPlane}; !slices.Equal(res.Reused, want) {
		t.Errorf("reused %v, want the components before nodes %v", res.Reused, want)
	}

	// 3. Within one run: a file changed after the plan, on the server the
	// apply walks, is caught and put back by that apply.
	onWorker("echo '# changed by hand before the plan' >> " + node.KubeProxyConfig)
	plan, res = planApply("a file changed between the plan and the apply", func() {
		onWorker("echo '# changed by hand after the plan' >> " + node.KubeletConfig)
	})
	if !mentions(plan, node.KubeProxyConfig) || mentions(plan, node.KubeletConfig) {
		t.Errorf("the plan on %s: %v, want %s and not yet %s", worker, plan.Changes[worker], node.KubeProxyConfig, node.KubeletConfig)
	}
	if !mentions(res, node.KubeProxyConfig) || !mentions(res, node.KubeletConfig) {
		t.Errorf("the apply on %s: %v, want both %s and %s put back", worker, res.Changes[worker], node.KubeProxyConfig, node.KubeletConfig)
	}
	if n := onWorker("cat " + node.KubeProxyConfig + " " + node.KubeletConfig + " | grep -c 'changed by hand' || true"); n != "0" {
		t.Errorf("%s hand-made lines left on %s after the apply", n, worker)
	}
	again, err := e.Plan(ctx, installer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) > 0 {
		t.Errorf("not converged after the applies: %v", again.Changes)
	}
}
