package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestPrintEtcdPlanShowsRisks: the plan of growing the three-center
// example's etcd from 3 to 5 members shows each step's voting members per
// center, the window where dc1's loss would lose quorum, and the flag.
func TestPrintEtcdPlanShowsRisks(t *testing.T) {
	c, _, err := inventory.Load("../../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	pl, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Etcd.Members) != 5 {
		t.Fatalf("the example places %d members, want 5", len(pl.Etcd.Members))
	}
	// Recorded: one member per center (the first of each in the placement).
	var recorded []string
	seen := map[string]bool{}
	for _, m := range pl.Etcd.Members {
		if !seen[m.Center] {
			seen[m.Center] = true
			recorded = append(recorded, m.Name)
		}
	}
	mp, err := etcd.PlanFromRecord(c, recorded, pl.Etcd.Members)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printEtcdPlan(&b, c, pl, &etcd.Result{Membership: &mp.Before, Steps: mp.Steps, Risks: mp.Risks})
	out := b.String()
	t.Logf("\n%s", out)
	for _, s := range []string{
		"voting members now: dc1 1, dc2 1, dc3 1: 3 voting, quorum 2; any one center can be lost",
		"membership 1: add ", "membership 2: promote learner ",
		"then dc1 2, dc2 1, dc3 1: 4 voting, quorum 3; losing dc1 loses quorum",
		"risk window: losing dc1 from step 2 until step 4 leaves 2 of 4 voting members, 3 needed",
		"apply runs these windows only with --accept-transient-risk",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the plan does not show %q", s)
		}
	}
}

func TestApplyAcceptTransientRiskFlag(t *testing.T) {
	out, _, code := runCLI(t, "apply", "--help")
	if code != 0 || !strings.Contains(out, "--accept-transient-risk") || !strings.Contains(out, "loss of one center loses quorum") {
		t.Fatalf("apply --help (exit %d) does not describe --accept-transient-risk:\n%s", code, out)
	}
}

// The apply's summary names the etcd leader with its center and says when
// the apply moved it into production (no host changed for it).
func TestPrintAppliedLeaderMoved(t *testing.T) {
	c, lines, err := inventory.Load(labInv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := installer.New(installer.Config{Cluster: c, Lines: lines, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	h := &etcd.ClusterHealth{Leader: 1, Members: []etcd.Member{{ID: 1, Name: "dc1-r01-s01"}}}
	res := &installer.Result{Components: []installer.Component{installer.Etcd}, Changes: map[string][]string{},
		Etcd: &etcd.Result{Health: h, Leader: "dc1-r01-s01", LeaderCenter: "dc1", LeaderMoved: "dc2-r01-s01 (dc2) → dc1-r01-s01 (dc1)"}}
	var b bytes.Buffer
	printApplied(&b, e, res, time.Second)
	out := b.String()
	for _, s := range []string{
		"applied etcd in 1s: 0 hosts changed\n",
		"members healthy, leader dc1-r01-s01 (dc1)\n",
		"etcd: leader moved into the production center: dc2-r01-s01 (dc2) → dc1-r01-s01 (dc1) (no host changed)\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the summary does not say %q:\n%s", s, out)
		}
	}
	if !res.Converged() {
		t.Errorf("an apply that only moved the leader is not converged")
	}
}
