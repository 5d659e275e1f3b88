package ssh_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
)

// hostProc is a process on a lab host. The hosts are network namespaces
// of this machine, so their processes are this machine's: a process is
// told apart by pid and start time (no pid reuse can fool the check).
type hostProc struct {
	pid, ppid int
	start     string // start time, in clock ticks since boot
	uid       string
	cmdline   string
	exiting   bool // PF_EXITING: killed, tearing down, not yet a zombie
}

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h),
// field 9 of /proc/PID/stat.
const pfExiting = 0x4

// readProc reads /proc/PID; ok is false when the process is gone or a
// zombie.
func readProc(pid int) (p hostProc, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return p, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return p, false
	}
	p.pid = pid
	p.ppid, _ = strconv.Atoi(f[1])
	p.start = f[19]
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	p.exiting = flags&pfExiting != 0
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	p.cmdline = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(st); m != nil {
		p.uid = string(m[1])
	}
	return p, true
}

func allProcs() []hostProc {
	ents, _ := os.ReadDir("/proc")
	var out []hostProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// tree is every process whose command line holds marker, with all their
// descendants.
func tree(marker string) []hostProc {
	ps := allProcs()
	in := map[int]bool{}
	for _, p := range ps {
		if strings.Contains(p.cmdline, marker) {
			in[p.pid] = true
		}
	}
	for grew := true; grew; {
		grew = false
		for _, p := range ps {
			if !in[p.pid] && in[p.ppid] {
				in[p.pid], grew = true, true
			}
		}
	}
	var out []hostProc
	for _, p := range ps {
		if in[p.pid] {
			out = append(out, p)
		}
	}
	return out
}

// alive returns the processes of ps that still run (same pid and start
// time, not a zombie, not exiting). A killed process is not a zombie at
// once: it first tears down (PF_EXITING set, its memory released, its
// command line and environment reading empty, state still R or D). Such a
// process is past the point of return and counts as gone, as it does for
// the termination script.
func alive(ps []hostProc) []hostProc {
	var out []hostProc
	for _, p := range ps {
		q, ok := readProc(p.pid)
		if !ok || q.start != p.start || q.exiting {
			continue
		}
		out = append(out, q)
	}
	return out
}

// waitTree waits until the processes holding marker, with their
// descendants, satisfy ready, and arranges for the test to kill any of
// them left at its end: only processes this test started.
func waitTree(t *testing.T, marker string, ready func([]hostProc) bool) []hostProc {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps := tree(marker)
		if ready(ps) {
			t.Cleanup(func() {
				for _, p := range alive(ps) {
					_ = syscall.Kill(p.pid, syscall.SIGKILL)
				}
			})
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("the processes holding %q are not there after 15s: %v", marker, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running is a ready func for waitTree: n processes run cmdline.
func running(cmdline string, n int) func([]hostProc) bool {
	return func(ps []hostProc) bool { return len(only(ps, cmdline)) == n }
}

// only returns the processes of ps that run cmdline.
func only(ps []hostProc, cmdline string) []hostProc {
	var out []hostProc
	for _, p := range ps {
		if p.cmdline == cmdline {
			out = append(out, p)
		}
	}
	return out
}

// uniqueSleep is a sleep argument no other process on this machine has.
func uniqueSleep(t *testing.T) string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e9))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("300.%09d", n.Int64())
}

// runCancelled starts cmd on c, waits for the processes holding marker
// to be ready, cancels, and returns the processes seen, how long Run took to return
// after the cancel, and its error.
func runCancelled(t *testing.T, c *ssh.Client, cmd, marker string, ready func([]hostProc) bool) ([]hostProc, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- c.Run(ctx, cmd, nil, io.Discard, io.Discard) }()
	ps := waitTree(t, marker, ready)
	select {
	case err := <-res:
		t.Fatalf("the command ended before it was cancelled: %v", err)
	default:
	}
	start := time.Now()
	cancel()
	select {
	case err := <-res:
		return ps, time.Since(start), err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of the cancel")
	}
	return nil, 0, nil
}

// A cancelled root command leaves no process on the host: the command,
// what it started in the background, under sudo and as the root login,
// and a command that ignores TERM (KILL after the grace). Another command
// running at the same time on the same host is left alone. Real sshd,
// real sudo (installer/sshtest).
func TestCancelEndsRootCommand(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	const grace = 1500 * time.Millisecond
	for _, user := range []string{"deploy", "root"} {
		t.Run(user, func(t *testing.T) {
			p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}, TerminateGrace: grace})
			ep := ssh.Endpoint{Name: l.Hosts[0].Name, Address: l.Hosts[0].Addr.String(), User: user, KeyFile: l.ClientKey}
			c, err := p.Client(ctxT(t), ep)
			if err != nil {
				t.Fatal(err)
			}

			// A bystander: another root command on the host, not cancelled.
			by := uniqueSleep(t)
			byCtx, byCancel := context.WithCancel(context.Background())
			byDone := make(chan error, 1)
			go func() { byDone <- c.Run(byCtx, c.AsRoot("sleep "+by), nil, io.Discard, io.Discard) }()
			bystander := only(waitTree(t, by, running("sleep "+by, 1)), "sleep "+by)

			t.Run("a shell and its background child", func(t *testing.T) {
				s := uniqueSleep(t)
				ps, took, err := runCancelled(t, c, c.AsRoot("sh -c 'sleep "+s+" & sleep "+s+"'"), s, running("sleep "+s, 2))
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run after cancel: %v, want context.Canceled", err)
				}
				sleeps := 0
				for _, p := range ps {
					if strings.HasPrefix(p.cmdline, "sleep "+s) {
						sleeps++
						if p.uid != "0" {
							t.Errorf("%s ran as uid %s, want root", p.cmdline, p.uid)
						}
					}
				}
				if sleeps != 2 {
					t.Fatalf("want the two sleeps among %v", ps)
				}
				if left := append(alive(ps), tree(s)...); len(left) > 0 {
					t.Fatalf("after Run returned, processes of the cancelled command are left on the host: %v", left)
				}
				if took > grace {
					t.Errorf("Run took %s after the cancel, want less than the grace %s (the processes heed TERM)", took, grace)
				}
				t.Logf("%d processes ended, Run returned %s after the cancel", len(ps), took.Round(time.Millisecond))
			})

			t.Run("a command that ignores TERM", func(t *testing.T) {
				s := uniqueSleep(t)
				// An ignored signal stays ignored across exec: the sleep
				// ignores TERM too.
				ps, took, err := runCancelled(t, c, c.AsRoot("trap '' TERM; sleep "+s+" & wait"), s, running("sleep "+s, 1))
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run after cancel: %v, want context.Canceled", err)
				}
				if left := append(alive(ps), tree(s)...); len(left) > 0 {
					t.Fatalf("after Run returned, processes of the cancelled command are left on the host: %v", left)
				}
				if took < grace || took > grace+10*time.Second {
					t.Errorf("Run took %s after the cancel, want the grace %s (then KILL) and a little more", took, grace)
				}
				t.Logf("%d processes killed after the grace, Run returned %s after the cancel", len(ps), took.Round(time.Millisecond))
			})

			t.Run("an upload", func(t *testing.T) {
				dst := "/srv/cancelled-" + strings.TrimPrefix(uniqueSleep(t), "300.") + ".bin"
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				res := make(chan error, 1)
				const size = 1 << 20
				go func() {
					res <- c.Put(ctx, &slowReader{ctx: ctx}, dst, ssh.PutOptions{SHA256: strings.Repeat("0", 64), Size: size})
				}()
				marker := "tricenter-put " + dst
				ps := waitTree(t, marker, running("cat", 1))
				cancel()
				select {
				case err := <-res:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("Put after cancel: %v, want context.Canceled", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("Put did not return within 30s of the cancel")
				}
				if left := append(alive(ps), tree(marker)...); len(left) > 0 {
					t.Fatalf("after Put returned, processes of the cancelled upload are left on the host: %v", left)
				}
			})

			// The bystander still runs; cancelled, it goes too.
			if left := alive(bystander); len(left) != len(bystander) {
				t.Fatalf("the other command on the host was ended too: %v of %v left", left, bystander)
			}
			byCancel()
			if err := <-byDone; !errors.Is(err, context.Canceled) {
				t.Fatalf("bystander: %v, want context.Canceled", err)
			}
			if left := alive(bystander); len(left) > 0 {
				t.Fatalf("bystander left on the host after its cancel: %v", left)
			}
		})
	}

	// What the run id is for: under sudo, a command without it (the line
	// AsRoot built before) survives the cancel, since sshd delivers the
	// session's signal as the login user. Logged, not asserted: it
	// documents the host's sshd and sudo, not this package.
	t.Run("control: without the run id", func(t *testing.T) {
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		ep := ssh.Endpoint{Name: l.Hosts[0].Name, Address: l.Hosts[0].Addr.String(), User: "deploy", KeyFile: l.ClientKey}
		c, err := p.Client(ctxT(t), ep)
		if err != nil {
			t.Fatal(err)
		}
		s := uniqueSleep(t)
		ps, _, err := runCancelled(t, c, "sudo -n -- sh -c 'sleep "+s+"'", s, running("sleep "+s, 1))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: %v, want context.Canceled", err)
		}
		time.Sleep(500 * time.Millisecond)
		t.Logf("without the run id, %d of %d processes survived the cancel under sudo (the test kills them)", len(alive(ps)), len(ps))
	})
}

// A cancelled command on a host the connection no longer reaches (a
// silent partition: no reset, no answer) ends Run within a couple of
// seconds: nothing can end the remote command then, and Run must not hang
// on it.
func TestCancelOnSilentConnection(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	proxy, freeze := freezingProxy(t, l.Hosts[0].Addr.String()+":22")
	host, port, _ := net.SplitHostPort(proxy)
	pn, _ := strconv.Atoi(port)
	p := newPool(t, ssh.Options{TerminateGrace: time.Second})
	c, err := p.Client(ctxT(t), ssh.Endpoint{Name: l.Hosts[0].Name, Address: host, Port: pn, User: "deploy",
		KeyFile: l.ClientKey, HostKey: l.Hosts[0].Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	s := uniqueSleep(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- c.Run(ctx, c.AsRoot("sleep "+s), nil, io.Discard, io.Discard) }()
	waitTree(t, s, running("sleep "+s, 1)) // left running: the test kills it
	freeze()
	start := time.Now()
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of the cancel")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("Run took %s after the cancel on a silent connection, want about 2s", took)
	} else {
		t.Logf("Run returned %s after the cancel", took.Round(time.Millisecond))
	}
}

// freezingProxy forwards TCP to target until freeze is called; from then
// on it forwards nothing and closes nothing, as a silent partition.
func freezingProxy(t *testing.T, target string) (addr string, freeze func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var frozen atomic.Bool
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		frozen.Store(false)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for frozen.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return ln.Addr().String(), func() { frozen.Store(true) }
}

// The run id is in the command's environment, and a failing command's
// error shows its line without it.
func TestAsRootMark(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t)
	for _, user := range []string{"deploy", "root"} {
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		c, err := p.Client(ctx, ssh.Endpoint{Name: l.Hosts[0].Name, Address: l.Hosts[0].Addr.String(), User: user, KeyFile: l.ClientKey})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Output(ctx, c.AsRoot(`id -u; echo "$TRICENTER_RUN"`))
		if f := strings.Fields(string(out)); err != nil || len(f) != 2 || f[0] != "0" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(f[1]) {
			t.Fatalf("%s: got %q, %v; want root and a 32-hex run id", user, out, err)
		}
		_, err = c.Output(ctx, c.AsRoot("echo failing >&2; exit 3"))
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.Status != 3 || strings.Contains(err.Error(), "TRICENTER_RUN") || !strings.Contains(err.Error(), "exit 3") {
			t.Fatalf("%s: got %v, want exit status 3 with the line shown without the run id", user, err)
		}
	}
}

// slowReader gives a byte every 10 ms until ctx ends.
type slowReader struct{ ctx context.Context }

func (r *slowReader) Read(p []byte) (int, error) {
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-time.After(10 * time.Millisecond):
	}
	p[0] = 'x'
	return 1, nil
}
