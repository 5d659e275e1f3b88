package acceptance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/provider"
)

// Short certificate lifetimes on the lab (spec.pki in minutes): the CLI
// issues the kube-apiserver serving certificates for shortLeafLifetime;
// status reports them due on its own once shortRenewBefore of their life
// is left; terraform, importing the cluster with an inventory that keeps
// that renewBefore and gives leaves tfLeafLifetime, plans an update
// because its refresh found them due, and its apply renews them under
// probes. tfLeafLifetime is longer so that the plan terraform runs after
// its apply finds nothing due.
const (
	shortLeafLifetime = 4 * time.Minute
	shortRenewBefore  = 150 * time.Second
	tfLeafLifetime    = 10 * time.Minute
)

// checkShortLifetimes runs the short-lifetime cycle on the cluster target
// describes and returns an engine over the state terraform's apply left
// (restored into the CLI's state directory), at target's default policy.
func checkShortLifetimes(t *testing.T, ctx context.Context, k *kubeLab, target *inventory.Cluster) *installer.Engine {
	t.Helper()
	testenv.Terraform(t)
	short := withPKI(t, target, shortLeafLifetime, shortRenewBefore)
	e := k.engine(t, short)

	// 1. The CLI's `certs renew --kind "kube-apiserver serving"` at the
	// short lifetime, under probes.
	probes := startUpgradeProbes(t, ctx, k, e, "")
	res, err := e.RenewCertificates(ctx, installer.RenewOptions{Kinds: []string{pki.KindAPIServerServing}})
	lost, perr := probes.finish(ctx, e)
	if err != nil {
		t.Fatalf("renewing the kube-apiserver serving certificates at a %v lifetime: %v", shortLeafLifetime, err)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("%d kube-apiserver serving certificates issued for %v (renewBefore %v):\n  %s\n  %s; %d lost",
		res.Renewed, shortLeafLifetime, shortRenewBefore, probes.API.String(), probes.Etcd.String(), lost)
	if probes.API.Failed > 0 || lost > 0 {
		t.Errorf("the API failed %d probes through the VIP and %d acknowledged etcd writes were lost during the renewal:\n%s",
			probes.API.Failed, lost, probes.windows())
	}
	if res.Renewed == 0 {
		t.Fatal("the renewal renewed no certificate")
	}

	// 2. Status: the certificate is the short one, on every server and the
	// VIP, and it becomes due on its own once renewBefore of it is left.
	kind, st := apiServingExpiry(t, ctx, e)
	if limit := res.Started.Add(shortLeafLifetime + time.Minute); kind.NotAfter.After(limit) || kind.NotAfter.Before(res.Started) {
		t.Fatalf("status: the kube-apiserver serving certificate expires %s: want within %v of the renewal at %s",
			kind.NotAfter.UTC().Format(time.RFC3339), shortLeafLifetime, res.Started.UTC().Format(time.RFC3339))
	}
	checkServedFromState(t, st, res.Started)
	var dueAt time.Time
	if err := pollUntil(ctx, shortLeafLifetime, func() error {
		kind, st = apiServingExpiry(t, ctx, e)
		if kind.RenewDue != (kind.Left <= shortRenewBefore) {
			t.Fatalf("status: %q renew due %v with %v left of it (renewBefore %v)", kind.Kind, kind.RenewDue, kind.Left, shortRenewBefore)
		}
		if !kind.RenewDue {
			return fmt.Errorf("not due yet: %v left", kind.Left.Round(time.Second))
		}
		dueAt = time.Now()
		return nil
	}); err != nil {
		t.Fatalf("status never reported the kube-apiserver serving certificate due: %v", err)
	}
	if !slices.ContainsFunc(st.Warnings, func(w string) bool {
		return strings.Contains(w, pki.KindAPIServerServing) && strings.Contains(w, "within renewBefore")
	}) {
		t.Errorf("status reports the certificate due without a warning naming it: %q", st.Warnings)
	}
	t.Logf("status: %q due %v after its renewal (%v left)", pki.KindAPIServerServing,
		dueAt.Sub(res.Started).Round(time.Second), kind.Left.Round(time.Second))

	// 3. Terraform: import the cluster from the CLI's state directory; the
	// refresh finds the certificate due, the plan is an update that
	// renews it, and its apply does, under probes. A removed block then
	// forgets the cluster, so that the test case's destroy leaves it.
	inv := filepath.Join(k.dir, "short-lifetimes.yaml")
	b, err := yaml.Marshal(withPKI(t, target, tfLeafLifetime, shortRenewBefore))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(k.stateDir, target.Metadata.Name)
	config := fmt.Sprintf(`
resource "tricenter_cluster" "lab" {
  path = %q
}
`, inv)
	const addr = "tricenter_cluster.lab"
	var applied time.Time
	probes = startUpgradeProbes(t, ctx, k, e, "")
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error){
			"tricenter": providerserver.NewProtocol6WithError(provider.New("test")()),
		},
		Steps: []resource.TestStep{
			{
				PreConfig: func() { applied = time.Now() },
				Config:    config + importConfig(addr, dir+"#"+inv),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					renewalPlanned{addr: addr},
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "certificates_renew_due", "false"),
					resource.TestCheckResourceAttr(addr, "healthy", "true"),
					func(s *terraform.State) error {
						a := s.RootModule().Resources[addr].Primary.Attributes
						at, err := time.Parse(time.RFC3339, a["earliest_certificate_expiry"])
						if err != nil {
							return fmt.Errorf("earliest_certificate_expiry %q: %w", a["earliest_certificate_expiry"], err)
						}
						if at.Before(applied.Add(tfLeafLifetime - time.Minute)) {
							return fmt.Errorf("earliest_certificate_expiry %s: the renewed certificates should live %v from %s",
								at.Format(time.RFC3339), tfLeafLifetime, applied.UTC().Format(time.RFC3339))
						}
						// The CLI goes on from what terraform's apply left.
						return stateToDir(dir, a["state"])
					},
				),
			},
			{
				Config: forgetConfig(addr),
				Check: func(s *terraform.State) error {
					if _, ok := s.RootModule().Resources[addr]; ok {
						return fmt.Errorf("%s is still in state", addr)
					}
					return nil
				},
			},
		},
	})
	lost, perr = probes.finish(ctx, e)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("terraform plan and apply renewed the due certificates in %v:\n  %s\n  %s; %d lost",
		time.Since(applied).Round(time.Second), probes.API.String(), probes.Etcd.String(), lost)
	if probes.API.Failed > 0 || lost > 0 {
		t.Errorf("the API failed %d probes through the VIP and %d acknowledged etcd writes were lost during terraform's apply:\n%s",
			probes.API.Failed, lost, probes.windows())
	}

	// 4. The CLI sees what terraform renewed: served on every server, not
	// due under the policy terraform applied.
	after := k.engine(t, withPKI(t, target, tfLeafLifetime, shortRenewBefore))
	kind, st = apiServingExpiry(t, ctx, after)
	if kind.RenewDue || kind.NotAfter.Before(applied.Add(tfLeafLifetime-time.Minute)) {
		t.Errorf("after terraform's apply, status: %q expires %s (due %v)", kind.Kind, kind.NotAfter.UTC().Format(time.RFC3339), kind.RenewDue)
	}
	checkServedFromState(t, st, applied)
	return k.engine(t, target)
}

// withPKI is a copy of c with spec.pki set to life and renew.
func withPKI(t *testing.T, c *inventory.Cluster, life, renew time.Duration) *inventory.Cluster {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cp, lines, err := inventory.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	cp.Spec.PKI = inventory.PKI{LeafLifetime: life.String(), RenewBefore: renew.String()}
	if err := cp.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	return cp
}

// apiServingExpiry is status's kube-apiserver serving kind, and the status.
func apiServingExpiry(t *testing.T, ctx context.Context, e *installer.Engine) (pki.KindExpiry, *installer.Status) {
	t.Helper()
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.Certificates == nil {
		t.Fatalf("status has no certificates: %q", st.Problems)
	}
	for _, k := range st.Certificates.Kinds {
		if k.Kind == pki.KindAPIServerServing {
			return k, st
		}
	}
	t.Fatalf("status lists no %q certificate", pki.KindAPIServerServing)
	return pki.KindExpiry{}, nil
}

// checkServedFromState: every control-plane server and the VIP serve the
// state's kube-apiserver certificate, issued after since.
func checkServedFromState(t *testing.T, st *installer.Status, since time.Time) {
	t.Helper()
	if len(st.Certificates.Served) == 0 {
		t.Error("status observed no served kube-apiserver certificate")
	}
	for _, s := range st.Certificates.Served {
		if !s.Observed || !s.MatchesStore || s.NotAfter.Before(since) {
			t.Errorf("%s (%s) serves a certificate expiring %s (observed %v, the state's %v): %s",
				s.Name, s.Address, s.NotAfter.UTC().Format(time.RFC3339), s.Observed, s.MatchesStore, s.Error)
		}
	}
}

// renewalPlanned checks that the plan's refresh found the cluster's
// certificates due and the plan renews them (certificates_renew_due true
// before; false or known after apply after).
type renewalPlanned struct{ addr string }

func (r renewalPlanned) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Address != r.addr || rc.Change == nil {
			continue
		}
		before, _ := rc.Change.Before.(map[string]any)
		after, _ := rc.Change.After.(map[string]any)
		unknown, _ := rc.Change.AfterUnknown.(map[string]any)
		planned := fmt.Sprint(after["certificates_renew_due"])
		if unknown["certificates_renew_due"] == true {
			planned = "(known after apply)"
		}
		// The plan's apply recomputes it: false or known after apply.
		if before["certificates_renew_due"] != true || (planned != "false" && planned != "(known after apply)") {
			resp.Error = fmt.Errorf("%s: certificates_renew_due %v → %s: want the refresh to find them due (true) and the plan to renew them",
				r.addr, before["certificates_renew_due"], planned)
		}
		return
	}
	resp.Error = fmt.Errorf("the plan has no change for %s", r.addr)
}

// checkDefaultLifetimes: no certificate of the state is due, and the
// kube-apiserver serving certificate lives the inventory's default leaf
// lifetime again.
func checkDefaultLifetimes(t *testing.T, ctx context.Context, e *installer.Engine) {
	t.Helper()
	kind, st := apiServingExpiry(t, ctx, e)
	if kind.Left < inventory.DefaultPKILeafLifetime-24*time.Hour {
		t.Errorf("%q expires %s: want the default lifetime %v", kind.Kind, kind.NotAfter.UTC().Format(time.RFC3339), inventory.DefaultPKILeafLifetime)
	}
	for _, k := range st.Certificates.Kinds {
		if k.RenewDue || k.Expired {
			t.Errorf("%s (%s) is due: expires %s", k.Kind, k.File, k.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

// stateToDir writes the engine state held in a tricenter_cluster's
// state attribute into dir, where the CLI's engine reads it.
func stateToDir(dir, blob string) error {
	files, _, err := state.DecodeBlob(blob)
	if err != nil {
		return err
	}
	return state.Restore(dir, files)
}

// importConfig imports an applied cluster (id: "STATE_DIR#INVENTORY")
// into addr.
func importConfig(addr, id string) string {
	return fmt.Sprintf(`
import {
  to = %s
  id = %q
}
`, addr, id)
}

// forgetConfig is a configuration that drops addr from the Terraform
// state without destroying the cluster it manages.
func forgetConfig(addr string) string {
	return fmt.Sprintf(`
removed {
  from = %s
  lifecycle {
    destroy = false
  }
}
`, addr)
}
