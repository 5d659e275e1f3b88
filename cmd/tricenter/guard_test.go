package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// runCLIIn is runCLI with stdin in (nil: the process's).
func runCLIIn(t *testing.T, in io.Reader, args ...string) (string, string, int) {
	t.Helper()
	return runCLIWith(t, testEnv{}, in, args...)
}

// testEnv is what a test run sees of its environment: variables (none by
// default: the developer's TRICENTER_INVENTORY does not leak in) and a
// terminal for confirmations when stdin held the inventory (nil: none).
type testEnv struct {
	env map[string]string
	tty func() (io.Reader, error)
}

// runCLIWith is runCLIIn in the environment env.
func runCLIWith(t *testing.T, env testEnv, in io.Reader, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	tty := env.tty
	if tty == nil {
		tty = func() (io.Reader, error) { return nil, errors.New("no terminal in tests") }
	}
	root := newRoot(&globals{stdout: &out, stderr: &errb, getenv: func(k string) string { return env.env[k] }, openTTY: tty})
	root.SetArgs(args)
	if in != nil {
		root.SetIn(in)
	}
	err := root.ExecuteContext(context.Background())
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			if ee.err != nil {
				errb.WriteString("Error: " + ee.err.Error() + "\n")
			}
		} else {
			errb.WriteString("Error: " + err.Error() + "\n")
		}
	}
	return out.String(), errb.String(), code
}

func TestConfirm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{{"y\n", true}, {"YES\n", true}, {"n\n", false}, {"\n", false}, {"", false}, {"yes please\n", false}} {
		var w bytes.Buffer
		got, err := confirm(context.Background(), &w, strings.NewReader(tc.in), "Go?")
		if err != nil || got != tc.want || w.String() != "Go? [y/N] " {
			t.Errorf("answer %q: %v, %v (asked %q)", tc.in, got, err, w.String())
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, f := range []*os.File{devnull, r} {
		if ok, err := confirm(context.Background(), io.Discard, f, "Go?"); ok || err == nil || !strings.Contains(err.Error(), "pass --yes") {
			t.Errorf("stdin %s, not a terminal: %v, %v", f.Name(), ok, err)
		}
	}
	// An interrupt ends the wait for an answer that never comes.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if ok, err := confirm(ctx, io.Discard, io.Reader(struct{ io.Reader }{r}), "Go?"); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("interrupted at the prompt: %v, %v", ok, err)
	}
}

// recordingPower records the drill's power calls and touches nothing.
type recordingPower struct {
	mu   sync.Mutex
	offs []string
	ons  []string
}

func (p *recordingPower) Describe() string { return "recording fake power" }
func (p *recordingPower) Off(_ context.Context, h inventory.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offs = append(p.offs, h.Name)
	return nil
}
func (p *recordingPower) On(_ context.Context, h inventory.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ons = append(p.ons, h.Name)
	return nil
}

// drillStateDir is a state directory for drill-inventory with its etcd PKI,
// as apply leaves it.
func drillStateDir(t *testing.T) (string, *state.Dir) {
	t.Helper()
	c := mustCluster(t)
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := state.Open(dir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	var pm []pki.EtcdMember
	for _, m := range p.Etcd.Members {
		pm = append(pm, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	if _, err := st.PKI().EnsureEtcd(pm); err != nil {
		t.Fatal(err)
	}
	return dir, st
}

// TestDrillRefusals: the drill asks before taking a center down, refuses
// without a terminal or --yes, and refuses while a journal exists; none of
// them touches a server. These end before any etcd or BMC is contacted.
func TestDrillRefusals(t *testing.T) {
	dir, st := drillStateDir(t)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	pw := &recordingPower{}
	var kinds []string
	run := func(in io.Reader, args ...string) (string, string, error) {
		return runDrillSub(context.Background(), newDrillCenterLossCmd, drillInventory, dir, in, pw, &kinds, args...)
	}

	_, errOut, err := run(strings.NewReader("n\n"), "--center", "dc1")
	if err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Errorf("answered n: %v", err)
	}
	for _, want := range []string{
		"Center-loss drill of dc1 (recording fake power) takes down 2 servers:",
		"center dc1  rack dc1-r01  dc1-s01 (etcd member, control plane), dc1-s02",
		"etcd members among them: dc1-s01 (1 of 3; 2 remain, quorum 2)",
		"control-plane servers among them: dc1-s01 (1 of 3)",
		"Take center dc1 down now? [y/N]",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the confirmation lacks %q:\n%s", want, errOut)
		}
	}

	if _, _, err := run(devnull, "--center", "dc3"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("stdin not a terminal, no --yes: %v", err)
	}

	killed := &state.DrillJournal{Center: "dc1", Method: "bmc", Servers: []string{"dc1-s01", "dc1-s02"}, Restored: []string{"dc1-s02"},
		PID: 999999, Host: "jump-1", Started: time.Now()}
	if err := st.WriteDrillJournal(killed); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(nil, "--center", "dc2", "--yes")
	if !errors.Is(err, etcd.ErrDrillJournal) || !strings.Contains(err.Error(), st.DrillJournalPath()) ||
		!strings.Contains(err.Error(), "dc1-s01") || !strings.Contains(err.Error(), "tricenter drill resume -f testdata/drill-inventory.yaml --state-dir "+dir) {
		t.Errorf("a drill with a journal present: %v", err)
	}
	if len(pw.offs)+len(pw.ons) != 0 {
		t.Errorf("power calls: off %v on %v", pw.offs, pw.ons)
	}
}

// With no journal, drill resume has nothing to do and needs nothing (not
// even the PKI).
func TestDrillResumeWithNothingToResume(t *testing.T) {
	dir := t.TempDir()
	var kinds []string
	out, errOut, err := runDrillSub(context.Background(), newDrillResumeCmd, drillInventory, dir, nil, &recordingPower{}, &kinds)
	if err != nil || !strings.Contains(out, "Nothing to resume: no drill journal at "+filepath.Join(dir, "drill", "drill-journal.json")) {
		t.Errorf("resume without a journal: %v\n%s%s", err, out, errOut)
	}
	if len(kinds) != 0 {
		t.Errorf("a power was built: %v", kinds)
	}
}

// openPTY opens a pseudo-terminal pair: the test keeps the master, the
// command gets the slave as its stdin (a terminal, so it asks).
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("a pseudo-terminal (/dev/ptmx, devpts mounted on /dev/pts): %w", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("a pseudo-terminal: unlocking: %w", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("a pseudo-terminal: its number: %w", e)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("a pseudo-terminal: %w", err)
	}
	return master, slave, nil
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSIGHUPStopsGracefully builds tricenter, runs "bmc off --center dc1"
// with a terminal on stdin so that it waits at its confirmation prompt (no
// BMC is contacted), sends SIGHUP as a dropped SSH session does and checks
// that the process left through the graceful path: the "Interrupted"
// message, the command's own error and exit status 130.
func TestSIGHUPStopsGracefully(t *testing.T) {
	master, slave, err := openPTY()
	testenv.Need(t, err)
	defer master.Close()
	defer slave.Close()

	bin := filepath.Join(t.TempDir(), "tricenter")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, bin, "bmc", "off", "-f", drillInventory, "--center", "dc1")
	var stdout, stderr syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &stdout, &stderr
	cmd.Env = append(os.Environ(), "TRICENTER_TEST_UNUSED=unused")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// Wait for the prompt, then hang up.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), "Power off these 2 servers? [y/N]") {
		select {
		case <-exited:
			t.Fatalf("tricenter exited before its prompt: %v\n%s%s", waitErr, stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prompt within a minute:\n%s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("tricenter still runs 30 s after SIGHUP:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) || ee.ExitCode() != 130 {
		t.Errorf("exit %v, want status 130 (interrupted)", waitErr)
	}
	errOut := stderr.String()
	for _, want := range []string{
		"Interrupted (hangup: the terminal or session closed): stopping after the running steps",
		"Error: not confirmed: context canceled",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(stdout.String(), "SERVER") {
		t.Errorf("servers were driven after SIGHUP:\n%s", stdout.String())
	}
}
