package state

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDrillJournalRoundTrip(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	if j, err := d.DrillJournal(); j != nil || err != nil {
		t.Fatalf("no journal yet: %+v, %v", j, err)
	}
	want := &DrillJournal{Center: "dc1", Method: "bmc", Servers: []string{"a", "b", "c"}, Restored: []string{"b"},
		Keys: "/tricenter/drill/dc1/1/", PID: 4242, Host: "jump-1", Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := d.WriteDrillJournal(want); err != nil {
		t.Fatal(err)
	}
	got, err := d.DrillJournal()
	if err != nil {
		t.Fatal(err)
	}
	if got.Center != want.Center || got.Method != want.Method || !slices.Equal(got.Servers, want.Servers) ||
		!slices.Equal(got.Restored, want.Restored) || got.Keys != want.Keys || got.PID != want.PID ||
		got.Host != want.Host || !got.Started.Equal(want.Started) {
		t.Errorf("read back %+v, wrote %+v", got, want)
	}
	if p := got.Pending(); !slices.Equal(p, []string{"a", "c"}) {
		t.Errorf("pending %v, want a, c", p)
	}
	if s := got.Describe(); !strings.Contains(s, "center dc1 (bmc)") || !strings.Contains(s, "pid 4242 on jump-1") {
		t.Errorf("describe: %q", s)
	}
	if st, err := os.Stat(d.DrillJournalPath()); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("journal file: %v, %v", st, err)
	}
	for range 2 { // removing twice is fine
		if err := d.RemoveDrillJournal(); err != nil {
			t.Fatal(err)
		}
	}
	if j, err := d.DrillJournal(); j != nil || err != nil {
		t.Errorf("after remove: %+v, %v", j, err)
	}

	if err := os.WriteFile(d.DrillJournalPath(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DrillJournal(); err == nil || !strings.Contains(err.Error(), d.DrillJournalPath()) {
		t.Errorf("corrupt journal: %v", err)
	}
}

func TestLockDrillOneAtATime(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := d.LockDrill()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteDrillJournal(&DrillJournal{Center: "dc2", Method: "ssh", PID: 77, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.LockDrill()
	if !errors.Is(err, ErrDrillRunning) || !strings.Contains(err.Error(), "center dc2 (ssh)") || !strings.Contains(err.Error(), "pid 77 on h") {
		t.Errorf("second lock: %v", err)
	}
	unlock()
	unlock2, err := d.LockDrill()
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
