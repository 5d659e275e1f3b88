package nspawn

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// dialSSH opens a TCP connection from the host's namespace to the machine's
// sshd and reads its banner.
func dialSSH(t *testing.T, m *Machine) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", netip.AddrPortFrom(m.Address, 22).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	banner, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("%s: ssh banner %q: %v", m.Name, banner, err)
	}
	return c, r
}

// A powered-off machine is a dead server: its peers get no FIN and no RST
// (the port goes dark before its processes are killed), so a connection to
// it stays open and silent until the peer's own timeout. A clean shutdown,
// by contrast, closes the connection at once: the test can tell the two.
func TestPowerOffSendsNothing(t *testing.T) {
	lab, _, _ := startLab(t, "testdata/two-nodes.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := lab.Machine("kn-b1")

	conn, r := dialSSH(t, m)
	start := time.Now()
	if err := m.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("power off took %v", time.Since(start).Round(time.Millisecond))
	if m.Running() {
		t.Fatal("machine still running after power off")
	}
	// The peer keeps talking: a live kernel would answer with a reset.
	if _, err := conn.Write([]byte("SSH-2.0-probe\r\n")); err != nil {
		t.Fatalf("write to the powered-off machine failed at once: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := r.ReadByte()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("reading from a powered-off machine: byte %q, err %v; want a timeout (no FIN, no RST)", b, err)
	}
	if _, err := conn.Write([]byte("more\r\n")); err != nil {
		t.Fatalf("second write after the power cut: %v (a reset came back)", err)
	}

	// Power on: the machine boots with a working network again.
	start = time.Now()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("power on to sshd: %v", time.Since(start).Round(time.Millisecond))
	conn2, r2 := dialSSH(t, m)

	// Contrast: a clean shutdown closes the connection (EOF or reset).
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_ = conn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r2.ReadByte(); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("after a clean shutdown the peer saw %v, want EOF or a reset", err)
	}
	if _, err := os.Stat("/run/netns/" + m.ns.Name); err != nil {
		t.Fatalf("the machine's network namespace is gone: %v", err)
	}
}

// Two labs never share a machine directory: the second Up fails naming it
// and leaves the first lab's directory alone.
func TestUpRefusesADirectoryInUse(t *testing.T) {
	testenv.Need(t, Available())
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "first-lab")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ParseInventory(loadTestInventory(t, "testdata/two-nodes.yaml"),
		map[string]string{"KEYFILE": filepath.Join(dir, "k"), "KNOWNHOSTS": filepath.Join(dir, "kh")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Up(context.Background(), Config{Cluster: c, Rootfs: "/nonexistent", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "is in use by another lab") {
		t.Fatalf("Up on a directory in use: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the failed Up removed the other lab's files: %v", err)
	}
}
