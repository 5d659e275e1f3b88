package etcdsnap

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// fakeHost is a fake member: files by path, enabled/active units, and
// the commands run. Writes report Changed when the content differs.
type fakeHost struct {
	name    string
	files   map[string]string
	secrets []string
	enabled map[string]bool
	ran     []string
	// failStart makes `systemctl start` of the service fail.
	failStart bool
	// dry makes it a dry run's host (the fake records the same).
	dry bool
}

func newFakeHost(name string) *fakeHost {
	return &fakeHost{name: name, files: map[string]string{}, enabled: map[string]bool{}}
}

func (h *fakeHost) String() string { return h.name }
func (h *fakeHost) DryRun() bool   { return h.dry }
func (h *fakeHost) put(path, data string) phase.FileResult {
	changed := h.files[path] != data
	h.files[path] = data
	return phase.FileResult{Changed: changed}
}
func (h *fakeHost) Upload(_ context.Context, local, remote string, _ fs.FileMode) (phase.FileResult, error) {
	return h.put(remote, "binary "+local), nil
}
func (h *fakeHost) WriteFile(_ context.Context, path string, data []byte, _ fs.FileMode) (phase.FileResult, error) {
	return h.put(path, string(data)), nil
}
func (h *fakeHost) WriteSecret(_ context.Context, path string, data []byte, _ fs.FileMode) (phase.FileResult, error) {
	h.secrets = append(h.secrets, path)
	return h.put(path, string(data)), nil
}
func (h *fakeHost) Query(_ context.Context, cmd string) (string, error) {
	switch {
	case strings.HasPrefix(cmd, "systemctl is-enabled "), strings.HasPrefix(cmd, "systemctl is-active "):
		if !h.enabled[strings.Fields(cmd)[2]] {
			return "disabled\n", nil
		}
		return strings.TrimPrefix(strings.Fields(cmd)[1], "is-") + "\n", nil
	case strings.HasPrefix(cmd, "ls "+Dir):
		var out []string
		for p := range h.files {
			if strings.HasPrefix(p, Dir+"/") {
				out = append(out, strings.TrimPrefix(p, Dir+"/"))
			}
		}
		return strings.Join(out, "\n"), nil
	case strings.HasPrefix(cmd, "ls "+TimerPath):
		var out []string
		for _, p := range []string{TimerPath, ServicePath} {
			if _, ok := h.files[p]; ok {
				out = append(out, p)
			}
		}
		return strings.Join(out, "\n"), nil
	case strings.HasPrefix(cmd, "journalctl"):
		return "etcd snapshot: every source failed\n", nil
	}
	return "", nil
}
func (h *fakeHost) Sudo(_ context.Context, cmd string) (string, error) {
	h.ran = append(h.ran, cmd)
	if strings.HasPrefix(cmd, "rm -f ") {
		for _, p := range strings.Fields(strings.TrimPrefix(cmd, "rm -f ")) {
			delete(h.files, strings.Trim(p, "'"))
		}
	}
	return "", nil
}
func (h *fakeHost) Systemctl(_ context.Context, args ...string) error {
	h.ran = append(h.ran, "systemctl "+strings.Join(args, " "))
	switch {
	case args[0] == "enable":
		h.enabled[TimerName] = true
	case args[0] == "disable":
		delete(h.enabled, TimerName)
	case args[0] == "start" && args[1] == ServiceName:
		if h.failStart {
			return errFake
		}
		h.files[Dir+"/c-20261207T080000Z-a.json"] = "{}"
	}
	return nil
}
func (h *fakeHost) SystemctlDaemonReload(context.Context) error {
	h.ran = append(h.ran, "daemon-reload")
	return nil
}

type fakeErr string

func (e fakeErr) Error() string { return string(e) }

const errFake = fakeErr("exit status 1")

func testOptions() Options {
	store := inventory.SnapshotStore{Server: inventory.Member{Name: "dc3-s1", Center: "dc3", Site: "remote"},
		Sources: []inventory.Member{{Name: "dc1-s1", Center: "dc1", Site: "local"}}}
	return Options{
		Stores: []inventory.SnapshotStore{store}, Members: []string{"dc1-s1", "dc3-s1"},
		Every: 6 * time.Hour, Binary: "/arts/tricenter-snapshot",
		CA: []byte("ca"), Cert: []byte("cert"), Key: []byte("key"),
		Config: func(st inventory.SnapshotStore) ([]byte, error) {
			return []byte(`{"storedOn":"` + st.Server.Name + `"}`), nil
		},
	}
}

// A store gets the binary, the certificates (the key as a secret), the
// configuration and both units, the timer enabled and a first snapshot
// taken at once; a second run changes nothing and takes none.
func TestInstallConverges(t *testing.T) {
	o := testOptions()
	h := newFakeHost("dc3-s1")
	if err := o.Apply(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{BinaryPath, CAPath, CertPath, KeyPath, ConfigPath, ServicePath, TimerPath} {
		if _, ok := h.files[p]; !ok {
			t.Errorf("%s not written", p)
		}
	}
	if !slices.Equal(h.secrets, []string{KeyPath}) {
		t.Errorf("secrets written: %v, want only the client key", h.secrets)
	}
	want := []string{"daemon-reload", "systemctl enable --now " + TimerName, "systemctl start " + ServiceName}
	if !slices.Equal(h.ran, want) {
		t.Errorf("ran %q, want %q", h.ran, want)
	}
	if !strings.Contains(h.files[TimerPath], "OnUnitActiveSec=21600s") || !strings.Contains(h.files[TimerPath], "RandomizedDelaySec=300s") {
		t.Errorf("timer:\n%s", h.files[TimerPath])
	}
	for _, dry := range []bool{false, true} {
		h.ran, h.dry = nil, dry
		if err := o.Apply(context.Background(), h); err != nil {
			t.Fatal(err)
		}
		if len(h.ran) != 0 {
			t.Errorf("second run (dry run %v) ran %q, want nothing", dry, h.ran)
		}
	}
	h.dry = false
	// A new interval rewrites the timer and restarts it (and takes one).
	o.Every = time.Hour
	h.ran = nil
	if err := o.Apply(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if want := []string{"daemon-reload", "systemctl restart " + TimerName, "systemctl start " + ServiceName}; !slices.Equal(h.ran, want) {
		t.Errorf("after a new interval ran %q, want %q", h.ran, want)
	}
}

// A first snapshot that fails fails the phase, naming the member and
// quoting the job's journal.
func TestFirstSnapshotFailureFailsTheApply(t *testing.T) {
	h := newFakeHost("dc3-s1")
	h.failStart = true
	err := testOptions().Apply(context.Background(), h)
	if err == nil || !strings.Contains(err.Error(), "the first snapshot on dc3-s1 failed") || !strings.Contains(err.Error(), "every source failed") {
		t.Fatalf("err = %v", err)
	}
}

// A member that is no store (anymore) loses the schedule's units and
// credentials, and keeps its snapshots; one that never had any is left
// untouched.
func TestRemoveElsewhere(t *testing.T) {
	o := testOptions()
	h := newFakeHost("dc3-s1")
	if err := o.Apply(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	o.Stores = nil
	h.ran = nil
	if err := o.Apply(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{TimerPath, ServicePath, ConfigPath, KeyPath, CertPath, CAPath} {
		if _, ok := h.files[p]; ok {
			t.Errorf("%s left behind", p)
		}
	}
	if _, ok := h.files[Dir+"/c-20261207T080000Z-a.json"]; !ok {
		t.Error("the snapshot taken was removed")
	}
	if h.enabled[TimerName] {
		t.Error("timer still enabled")
	}
	other := newFakeHost("dc1-s1")
	if err := o.Apply(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if len(other.ran) != 0 {
		t.Errorf("a member without a schedule: ran %q", other.ran)
	}
}

// Phases refuses a schedule it cannot install, and runs on the members
// Servers allows.
func TestPhases(t *testing.T) {
	o := testOptions()
	o.Binary = ""
	if _, err := Phases(o); err == nil || !strings.Contains(err.Error(), "run make artifacts") {
		t.Fatalf("no binary: %v", err)
	}
	o = testOptions()
	o.Servers = []string{"dc1-s1", "w1"}
	ph, err := Phases(o)
	if err != nil || len(ph) != 1 {
		t.Fatalf("%v, %v", ph, err)
	}
	if got := ph[0].(*phase.HostPhase).Select.Servers; !slices.Equal(got, []string{"dc1-s1"}) {
		t.Errorf("selected %v", got)
	}
	o.Servers = []string{"w1"}
	if ph, err := Phases(o); err != nil || ph != nil {
		t.Errorf("no member selected: %v, %v", ph, err)
	}
}
