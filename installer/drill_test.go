package installer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The CLI's drill test inventory: dc1 and dc2 servers have BMCs, dc3-s01
// has none; one etcd member per center, a worker in dc1.
const drillInventory = "../cmd/tricenter/testdata/drill-inventory.yaml"

// drillEngine is an engine over the drill inventory and a fresh state
// directory (with the PKI an apply creates when pki is set). No server is
// contacted by the tests that use it.
func drillEngine(t *testing.T, pki bool) (*Engine, *state.Dir) {
	t.Helper()
	c, lines, err := inventory.Load(drillInventory)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if pki {
		if _, err := e.EtcdPKI(true); err != nil {
			t.Fatal(err)
		}
	}
	return e, st
}

func TestChooseDrillPower(t *testing.T) {
	c, _, err := inventory.Load(drillInventory)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind, center, want, err string
	}{
		{"", "dc1", "bmc", ""},
		{"", "dc3", "ssh", ""},
		{"bmc", "dc3", "", "servers of center dc3 without a bmc block: dc3-s01: add their BMCs or use --power ssh"},
		{"ssh", "dc1", "ssh", ""},
		{"ipmi", "dc1", "", `power "ipmi" (--power): use bmc or ssh`},
		{"", "dc9", "", `no center named "dc9"`},
	} {
		got, err := chooseDrillPower(c, tc.kind, tc.center)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("chooseDrillPower(%q, %s) = %q, %v; want %q, error containing %q", tc.kind, tc.center, got, err, tc.want, tc.err)
		}
	}
}

// fakePower is a fake of the drill's power: it records calls and never
// touches a server.
type fakePower struct{ calls []string }

func (p *fakePower) Describe() string { return "fake power" }
func (p *fakePower) Off(_ context.Context, h inventory.Host) error {
	p.calls = append(p.calls, "off "+h.Name)
	return nil
}
func (p *fakePower) On(_ context.Context, h inventory.Host) error {
	p.calls = append(p.calls, "on "+h.Name)
	return nil
}

// A drill shows what goes dark before anything happens; declined, it
// touches nothing and says so.
func TestDrillConfirmationShowsTargetsAndDeclineTouchesNothing(t *testing.T) {
	e, st := drillEngine(t, true)
	for _, tc := range []struct {
		center, method, power string
		servers               []string
		notice                string
	}{
		{"dc1", "bmc", "fake power", []string{"dc1-s01", "dc1-s02"}, ""},
		// SSH stops etcd only: the etcd member, not the worker.
		{"dc3", "ssh", (&etcd.SSHPower{}).Describe(), []string{"dc3-s01"}, "not a power cut"},
	} {
		fake := &fakePower{}
		var methods, notices []string
		var shown *DrillTargets
		rep, err := e.Drill(context.Background(), DrillOptions{Center: tc.center, Kubernetes: DrillKubernetesOff,
			PowerFor: func(method string) (etcd.Power, error) {
				methods = append(methods, method)
				if method == DrillPowerSSH {
					return &etcd.SSHPower{}, nil
				}
				return fake, nil
			},
			Notice:  func(m string) { notices = append(notices, m) },
			Confirm: func(_ context.Context, t *DrillTargets) (bool, error) { shown = t; return false, nil },
			Started: func(*DrillTargets) { t.Errorf("%s: a declined drill started", tc.center) },
		})
		if !errors.Is(err, ErrDrillNotConfirmed) || rep != nil {
			t.Fatalf("%s: declined drill returned %v, %v", tc.center, rep, err)
		}
		if len(fake.calls) > 0 {
			t.Errorf("%s: a declined drill touched servers: %v", tc.center, fake.calls)
		}
		if !slices.Equal(methods, []string{tc.method}) {
			t.Errorf("%s: power asked for %v, want %s", tc.center, methods, tc.method)
		}
		var names []string
		for _, h := range shown.Servers {
			names = append(names, h.Name)
		}
		if shown.Center != tc.center || shown.Method != tc.method || shown.Power != tc.power || !slices.Equal(names, tc.servers) ||
			shown.Placement == nil || len(shown.Placement.Etcd.Members) != 3 {
			t.Errorf("%s: confirmation shown %+v (servers %v), want %s by %s: %v", tc.center, shown, names, tc.method, tc.power, tc.servers)
		}
		if tc.notice != "" && (len(notices) != 1 || !strings.Contains(notices[0], tc.notice)) {
			t.Errorf("%s: notices %q, want one saying %q", tc.center, notices, tc.notice)
		}
		if tc.notice == "" && len(notices) > 0 {
			t.Errorf("%s: unexpected notices %q", tc.center, notices)
		}
		if j, err := st.DrillJournal(); err != nil || j != nil {
			t.Errorf("%s: a declined drill left a journal: %+v, %v", tc.center, j, err)
		}
	}
}

// What a drill refuses before it asks: bad options, no PKI, a journal left
// by an earlier drill, a store without a directory for the journal.
func TestDrillRefusals(t *testing.T) {
	never := func(context.Context, *DrillTargets) (bool, error) {
		t.Error("asked for confirmation")
		return false, nil
	}
	e, _ := drillEngine(t, false)
	if _, err := e.Drill(context.Background(), DrillOptions{Center: "dc1", Confirm: never}); !errors.Is(err, ErrNoPKI) {
		t.Errorf("no PKI: %v, want ErrNoPKI", err)
	}
	if _, err := e.Drill(context.Background(), DrillOptions{Center: "dc1", Kubernetes: "maybe", Confirm: never}); err == nil ||
		!strings.Contains(err.Error(), `kubernetes "maybe" (--kubernetes): use auto, on or off`) {
		t.Errorf("bad --kubernetes: %v", err)
	}

	e, st := drillEngine(t, true)
	if err := st.WriteDrillJournal(&state.DrillJournal{Center: "dc2", Method: "bmc", Servers: []string{"dc2-s01"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Drill(context.Background(), DrillOptions{Center: "dc1", Confirm: never}); !errors.Is(err, etcd.ErrDrillJournal) ||
		!strings.Contains(err.Error(), st.DrillJournalPath()) {
		t.Errorf("journal present: %v, want ErrDrillJournal naming %s", err, st.DrillJournalPath())
	}

	c, _, err := inventory.Load(drillInventory)
	if err != nil {
		t.Fatal(err)
	}
	nodir, err := New(Config{Cluster: c, Store: storeWithoutDir{st}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodir.ResumeDrill(context.Background(), ResumeDrillOptions{}); err == nil || !strings.Contains(err.Error(), "state directory") {
		t.Errorf("store without a directory: %v", err)
	}
}

// storeWithoutDir is a Store that is not a state directory.
type storeWithoutDir struct{ Store }

// With no journal, resume has nothing to do and needs no PKI.
func TestResumeDrillWithoutJournal(t *testing.T) {
	e, st := drillEngine(t, false)
	rr, err := e.ResumeDrill(context.Background(), ResumeDrillOptions{PowerFor: func(string) (etcd.Power, error) {
		t.Error("asked for a power without a journal")
		return nil, nil
	}})
	if err != nil || rr == nil || rr.Journal != nil || rr.Path != st.DrillJournalPath() {
		t.Errorf("resume without a journal: %+v, %v; want an empty report naming %s", rr, err, st.DrillJournalPath())
	}
}
