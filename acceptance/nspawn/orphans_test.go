package nspawn

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// A lab whose owner process died is swept by the next one: its namespaces,
// its bridge (and the host route through it) and the mounts under its
// directory, also when that directory was given through a symbolic link. A
// lab whose owner still runs is left alone.
func TestSweepOrphans(t *testing.T) {
	testenv.Need(t, labnet.Available())
	registryDir = t.TempDir()

	// The dead lab: built here and abandoned (no Close), registered to a
	// process that has exited.
	dead, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	br, err := dead.Bridge(netip.MustParsePrefix("198.18.14.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Namespace("orphan"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "route", "add", "198.18.13.0/24", "via", "198.18.14.254", "dev", br.Name).CombinedOutput(); err != nil {
		t.Fatalf("route: %v: %s", err, out)
	}
	base := t.TempDir()
	real := filepath.Join(base, "real")
	mnt := filepath.Join(real, "machines", "m", "merged")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("umount", "-l", mnt).Run()
		_ = dead.Close()
	})
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	writeRegistration(t, "aaaaaa", registration{PID: gone.Process.Pid, Start: 1, NetID: dead.ID(), MachinesID: "aaaaaa", Dir: link})

	// The live lab: owned by this process.
	live, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Close() })
	if _, err := live.Namespace("alive"); err != nil {
		t.Fatal(err)
	}
	self, err := labnet.ProcStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	writeRegistration(t, "bbbbbb", registration{PID: os.Getpid(), Start: self, NetID: live.ID(), MachinesID: "bbbbbb", Dir: t.TempDir()})

	removed, err := SweepOrphans(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) == 0 {
		t.Fatal("nothing removed")
	}
	if left, err := labnet.Leftovers(dead.ID()); err != nil || len(left) > 0 {
		t.Fatalf("the dead lab's network is still there: %v %v", left, err)
	}
	if out, _ := exec.Command("ip", "route", "show", "198.18.13.0/24").Output(); len(out) > 0 {
		t.Fatalf("the route through the dead lab's bridge is still there: %s", out)
	}
	if m, err := mountsUnder(real); err != nil || len(m) > 0 {
		t.Fatalf("mounts under the dead lab's directory: %v %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(registryDir, "aaaaaa.json")); !os.IsNotExist(err) {
		t.Fatalf("the dead lab's registration is still there: %v", err)
	}
	if left, err := labnet.Leftovers(live.ID()); err != nil || len(left) != 1 {
		t.Fatalf("the live lab was touched: %v %v", left, err)
	}
	if _, err := os.Stat(filepath.Join(registryDir, "bbbbbb.json")); err != nil {
		t.Fatalf("the live lab's registration was removed: %v", err)
	}
}

func writeRegistration(t *testing.T, id string, r registration) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(registryDir, id+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
