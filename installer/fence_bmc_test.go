package installer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// BMC indices of this package's tests: 198.18.55.0/24 (ipmisim.LabAddr
// 1778-2031), apart from the other packages' blocks.
const bmcIndexBase = 1778

// TestFenceBMCPowerAgainstIPMISim fences through BMCPowerControl and real
// ipmi_sim BMCs whose chassis_control hook records every call: one server
// on, one off, and a third whose BMC address has no BMC behind it. The
// third refuses the fence and nothing is powered off; without it the
// server that is on is powered off through IPMI and reported so; with
// AssumeDead the third is fenced as assumed dead.
func TestFenceBMCPowerAgainstIPMISim(t *testing.T) {
	testenv.Need(t, ipmisim.Available())
	addrs, closeAddrs, err := ipmisim.LabAddrs(context.Background(), bmcIndexBase, bmcIndexBase+1, bmcIndexBase+2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeAddrs(); err != nil {
			t.Error(err)
		}
	})
	const pw = "fence-bmc-s3cret"
	t.Setenv("TRICENTER_TEST_FENCE_BMC_PW", pw)
	f := newFenceFixture(t)
	hosts := slices.Clone(f.hosts[:3])
	for i := range hosts {
		hosts[i].BMC = &inventory.BMC{Address: addrs[i].String(), User: "admin",
			Password: inventory.SecretRef{Env: "TRICENTER_TEST_FENCE_BMC_PW"}, CipherSuites: []int{3}}
	}
	on, off, gone := hosts[0].Name, hosts[1].Name, hosts[2].Name
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bmcs, err := ipmisim.StartAll(ctx, []ipmisim.Config{
		{Name: on, Address: addrs[0], User: "admin", Password: pw, Dir: dir, PoweredOn: true},
		{Name: off, Address: addrs[1], User: "admin", Password: pw, Dir: dir},
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipmisim.StopAll(bmcs) })
	pool := bmc.NewPool(bmc.Options{RetryBudget: 2 * time.Second})
	t.Cleanup(func() { _ = pool.Close(context.Background()) })
	power := &BMCPowerControl{Pool: pool, OffTimeout: 30 * time.Second}
	setEvents := func() []string {
		var out []string
		for _, b := range bmcs {
			ev, err := b.SetEvents()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ev {
				out = append(out, b.Name()+": "+e)
			}
		}
		return out
	}

	rep, err := f.e.fence(ctx, FenceOptions{Center: "dc3", Power: power, Yes: true}, hosts, f.cs)
	if !errors.Is(err, ErrFenceRefused) {
		t.Fatalf("fence with a BMC that does not answer: %v, want ErrFenceRefused", err)
	}
	t.Logf("refused: %s", rep.Servers[2].Power)
	if s := rep.Servers[2]; !strings.HasPrefix(s.Power, "not confirmed (BMC did not answer: ") || !strings.Contains(s.Power, gone) {
		t.Errorf("%s: %+v", gone, s)
	}
	if s := rep.Servers[0]; s.Power != "on (BMC)" {
		t.Errorf("%s: %+v", on, s)
	}
	if ev := setEvents(); len(ev) != 0 {
		t.Errorf("a refused fence sent %q", ev)
	}
	f.checkNothingTainted(t)

	rep, err = f.e.fence(ctx, FenceOptions{Center: "dc3", Power: power, Yes: true}, hosts[:2], f.cs)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Servers[0].Power != "powered off now (BMC)" || rep.Servers[1].Power != "off (BMC)" || !rep.Fenced {
		t.Errorf("report %+v", rep)
	}
	if ev := setEvents(); !slices.Equal(ev, []string{on + ": set power 0"}) {
		t.Errorf("hooks saw %q, want one power off of %s", ev, on)
	}
	if p, err := bmcs[0].PoweredOn(); err != nil || p {
		t.Errorf("%s powered on %v (%v) after the fence", on, p, err)
	}

	rep, err = f.e.fence(ctx, FenceOptions{Center: "dc3", Power: power, AssumeDead: true}, hosts, f.cs)
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Servers[2]; !strings.HasPrefix(s.Power, "assumed dead (BMC did not answer: ") || s.Node != "tainted" {
		t.Errorf("%s: %+v", gone, s)
	}
	for _, h := range hosts {
		if !outOfService(taintsOf(t, f.cs, h.Name)) {
			t.Errorf("%s is not tainted", h.Name)
		}
	}
}
