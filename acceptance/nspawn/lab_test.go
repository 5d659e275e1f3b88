package nspawn

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// startLab boots the lab described by an inventory in testdata, or skips
// saying why it cannot (fails under CI=true: internal/testenv).
func startLab(t *testing.T, file string) (*Lab, string, string) {
	t.Helper()
	if err := Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab: %w", err))
	}
	if err := bgplab.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab router: %w", err))
	}
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rootfs, err := EnsureRootfs(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, kh := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseInventory(data, map[string]string{"KEYFILE": key, "KNOWNHOSTS": kh})
	if err != nil {
		t.Fatal(err)
	}
	// Its own machine directory: t.TempDir's base name ("001") is the
	// same in every test process.
	if err := os.MkdirAll(filepath.Join(cache, "nspawn", "machines"), 0o755); err != nil {
		t.Fatal(err)
	}
	mdir, err := os.MkdirTemp(filepath.Join(cache, "nspawn", "machines"), "nspawn-test-")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lab, err := Up(ctx, Config{Cluster: c, Rootfs: rootfs, Dir: mdir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d machines up in %v", len(lab.Machines()), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return lab, key, kh
}

// sshRun runs a command on a machine with the OpenSSH client and strict
// host key checking against the lab's known_hosts.
func sshRun(ctx context.Context, key, kh string, m *Machine, command string) (string, error) {
	out, err := exec.CommandContext(ctx, "ssh", "-i", key, "-o", "UserKnownHostsFile="+kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
		"root@"+m.Address.String(), command).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestLabMachinesSSHLatencyAndPower(t *testing.T) {
	lab, key, kh := startLab(t, "testdata/three-centers.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	for _, m := range lab.Machines() {
		out, err := sshRun(ctx, key, kh, m, "hostname && systemctl is-system-running --wait || true")
		if err != nil {
			t.Fatalf("ssh %s: %v: %s", m.Name, err, out)
		}
		if first := strings.SplitN(out, "\n", 2)[0]; first != m.Name {
			t.Fatalf("ssh %s: hostname %q", m.Name, first)
		}
	}

	// The router sends no ICMP redirect on any port: a sender redirected
	// to a next hop in its own rack would bypass the BGP routes.
	sr, err := exec.CommandContext(ctx, "nsenter", "--net="+lab.RouterNamespace(), "sh", "-c",
		"for f in /proc/sys/net/ipv4/conf/*/send_redirects; do echo $f $(cat $f); done").CombinedOutput()
	if err != nil {
		t.Fatalf("router sysctls: %v: %s", err, sr)
	}
	if ports := strings.Count(string(sr), "\n"); ports < 3 || strings.Contains(string(sr), " 1\n") {
		t.Errorf("the lab router sends ICMP redirects:\n%s", sr)
	}

	// Same site: 2 ms RTT; remote center: 20 ms.
	near, err := lab.Ping(ctx, "st-a1", "st-b1", 20)
	if err != nil {
		t.Fatal(err)
	}
	far, err := lab.Ping(ctx, "st-a1", "st-c1", 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("measured RTT dc1↔dc2 %v (configured 2ms), dc1↔dc3 %v (configured 20ms)", near, far)
	if near < 1500*time.Microsecond || near > 10*time.Millisecond {
		t.Errorf("dc1↔dc2 RTT %v, want about 2ms", near)
	}
	if far < 19*time.Millisecond || far > 40*time.Millisecond {
		t.Errorf("dc1↔dc3 RTT %v, want about 20ms", far)
	}
	if st := lab.Delayer().Stats(); st.Delayed == 0 {
		t.Errorf("delayer saw no packets: %+v", st)
	}

	// Power off: the machine vanishes; power on: it boots with its disk.
	c := lab.Machine("st-c1")
	if out, err := sshRun(ctx, key, kh, c, "echo kept > /root/marker && sync"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Fatal("machine still running after power off")
	}
	if out, err := sshRun(ctx, key, kh, c, "true"); err == nil {
		t.Fatalf("ssh to a powered-off machine worked: %s", out)
	}
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("power on to sshd: %v", time.Since(start).Round(time.Millisecond))
	out, err := sshRun(ctx, key, kh, c, "cat /root/marker")
	if err != nil || out != "kept" {
		t.Fatalf("after power cycle: %q %v", out, err)
	}
}
