// Package bgplab runs the real peers of tricenter's BGP tests and
// benchmarks: FRR (zebra + bgpd) routers and tricenter-bgp agents, each in
// its own network namespace (internal/labnet), joined by bridges on
// 198.18.32.0/20. It needs root, iproute2 and the Debian frr package.
package bgplab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// FRR binaries (Debian's frr package).
const (
	ZebraBin = "/usr/lib/frr/zebra"
	BGPDBin  = "/usr/lib/frr/bgpd"
)

// Available says why FRR routers cannot run here, or nil.
func Available() error {
	if err := labnet.Available(); err != nil {
		return err
	}
	for _, b := range []string{ZebraBin, BGPDBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing: install the frr package (make deps)", b)
		}
	}
	if _, err := user.Lookup("frr"); err != nil {
		return errors.New("user frr is missing: install the frr package (make deps)")
	}
	return nil
}

// Router is an FRR zebra + bgpd pair running in a namespace.
type Router struct {
	NS  *labnet.NS
	Dir string
	// Log collects both daemons' output.
	Log   *SyncBuffer
	procs []*proc
}

// StartRouter writes bgpdConf (from `tricenter bgp render-frr`) into a new
// directory (removed by Stop) and starts zebra and bgpd in ns, waiting until
// both answer on their vty sockets. The caller must Stop it.
func StartRouter(ns *labnet.NS, hostname string, bgpdConf []byte) (*Router, error) {
	// zebra runs as user frr: its directory must be reachable by frr, which
	// test temporary directories (mode 0700) are not.
	dir, err := os.MkdirTemp("", "tricenter-frr-"+hostname+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &Router{NS: ns, Dir: dir, Log: &SyncBuffer{}}
	zconf := fmt.Sprintf("hostname %s\nip forwarding\n!\n", hostname)
	files := map[string][]byte{"zebra.conf": []byte(zconf), "bgpd.conf": bgpdConf}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
			return nil, err
		}
	}
	// zebra drops privileges to frr: it must own its directory and files.
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{dir, filepath.Join(dir, "zebra.conf"), filepath.Join(dir, "bgpd.conf")} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	zserv := filepath.Join(dir, "zserv.api")
	zebra, err := startProc(ns, r.Log, "zebra", ZebraBin,
		"-f", filepath.Join(dir, "zebra.conf"), "-i", filepath.Join(dir, "zebra.pid"),
		"-z", zserv, "--vty_socket", dir, "-P", "0", "--log", "stdout", "--log-level", "informational")
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, zebra)
	if err := r.waitVty("zebra", 10*time.Second); err != nil {
		r.Stop()
		return nil, err
	}
	bgpd, err := startProc(ns, r.Log, "bgpd", BGPDBin,
		"-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid"),
		"-z", zserv, "--vty_socket", dir, "-P", "0", "-S", "--log", "stdout", "--log-level", "informational")
	if err != nil {
		r.Stop()
		return nil, err
	}
	r.procs = append(r.procs, bgpd)
	if err := r.waitVty("bgpd", 10*time.Second); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

func (r *Router) waitVty(daemon string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := r.Vty(daemon, "show version")
		if err == nil {
			return nil
		}
		for _, p := range r.procs {
			if p.exited() {
				return fmt.Errorf("%s exited: %s", p.name, r.Log.String())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer on its vty socket within %s: %w\n%s", daemon, d, err, r.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends both daemons (SIGTERM, then SIGKILL after 5 s) and waits.
func (r *Router) Stop() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop(5 * time.Second)
	}
	r.procs = nil
	_ = os.RemoveAll(r.Dir)
}

// Vty runs one command on a daemon's vty socket (what vtysh does, without
// vtysh's startup cost) and returns its output.
func (r *Router) Vty(daemon, command string) (string, error) {
	c, err := net.DialTimeout("unix", filepath.Join(r.Dir, daemon+".vty"), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append([]byte(command), 0)); err != nil {
		return "", err
	}
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if len(out) >= 4 && out[len(out)-4] == 0 && out[len(out)-3] == 0 && out[len(out)-2] == 0 {
			status := out[len(out)-1]
			text := string(out[:len(out)-4])
			if status != 0 {
				return text, fmt.Errorf("%s: %q failed (status %d): %s", daemon, command, status, strings.TrimSpace(text))
			}
			return text, nil
		}
		if err != nil {
			return string(out), fmt.Errorf("%s: %q: %w", daemon, command, err)
		}
	}
}

// Path is one BGP path to a prefix as FRR shows it.
type Path struct {
	NextHop     string
	PeerAddress string
	ASPath      string
	Best        bool
	Multipath   bool
	LargeComms  string
	Valid       bool
}

// Paths returns FRR's BGP paths to prefix (none when it has no route).
func (r *Router) Paths(prefix string) ([]Path, error) {
	out, err := r.Vty("bgpd", "show bgp ipv4 unicast "+prefix+" json")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Prefix string `json:"prefix"`
		Paths  []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			LargeCommunity struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
			Valid     bool `json:"valid"`
			Multipath bool `json:"multipath"`
			Bestpath  struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("parsing FRR output for %s: %w: %q", prefix, err, out)
	}
	if resp.Prefix != "" && resp.Prefix != prefix {
		return nil, nil // FRR answered with a covering prefix
	}
	var paths []Path
	for _, p := range resp.Paths {
		x := Path{ASPath: p.ASPath.String, Best: p.Bestpath.Overall, Multipath: p.Multipath,
			LargeComms: p.LargeCommunity.String, Valid: p.Valid, PeerAddress: p.Peer.PeerID}
		if len(p.Nexthops) > 0 {
			x.NextHop = p.Nexthops[0].IP
		}
		paths = append(paths, x)
	}
	return paths, nil
}

// KernelNextHops returns the gateways of the router namespace's kernel
// route for prefix (none when there is no such route).
func (r *Router) KernelNextHops(prefix string) ([]string, error) {
	return KernelNextHops(r.NS, prefix)
}

// NextHops returns the next hops of FRR's BGP paths to prefix, sorted
// (none when it has no route).
func (r *Router) NextHops(prefix string) ([]string, error) {
	paths, err := r.Paths(prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range paths {
		out = append(out, p.NextHop)
	}
	slices.Sort(out)
	return out, nil
}

// WaitNextHops polls every 5ms, for at most d, until FRR's BGP table and
// the router namespace's kernel table both have exactly the next hops
// want for prefix, in any order (none: the route is gone). It returns how
// long that took, or an error naming the table that differs and what it
// had at the deadline.
func (r *Router) WaitNextHops(prefix string, want []string, d time.Duration) (time.Duration, error) {
	want = slices.Sorted(slices.Values(want))
	return WaitFor(d, 5*time.Millisecond, func() (bool, error) {
		got, err := r.NextHops(prefix)
		if err != nil {
			return false, err
		}
		if !slices.Equal(got, want) {
			return false, fmt.Errorf("FRR has next hops %v for %s, want %v", got, prefix, want)
		}
		return r.kernelHas(prefix, want)
	})
}

// WaitKernelNextHops polls every 5ms, for at most d, until the router
// namespace's kernel table forwards prefix to exactly want, in any order
// (none: no route): the best paths and those multipath adds, whatever
// other paths FRR keeps. It returns how long that took.
func (r *Router) WaitKernelNextHops(prefix string, want []string, d time.Duration) (time.Duration, error) {
	want = slices.Sorted(slices.Values(want))
	return WaitFor(d, 5*time.Millisecond, func() (bool, error) { return r.kernelHas(prefix, want) })
}

// kernelHas reports whether the kernel forwards prefix to exactly want
// (sorted), or an error saying what it has.
func (r *Router) kernelHas(prefix string, want []string) (bool, error) {
	k, err := r.KernelNextHops(prefix)
	if err != nil {
		return false, err
	}
	slices.Sort(k)
	if !slices.Equal(k, want) {
		return false, fmt.Errorf("kernel has next hops %v for %s, want %v", k, prefix, want)
	}
	return true, nil
}

// KernelNextHops returns the gateways of ns's kernel route for exactly
// prefix.
func KernelNextHops(ns *labnet.NS, prefix string) ([]string, error) {
	out, err := exec.Command("ip", "-j", "-n", ns.Name, "route", "show", "exact", prefix).Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show in %s: %w", ns.Name, err)
	}
	var routes []struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("parsing ip route output: %w", err)
	}
	var gws []string
	for _, rt := range routes {
		if rt.Gateway != "" {
			gws = append(gws, rt.Gateway)
		}
		for _, nh := range rt.Nexthops {
			gws = append(gws, nh.Gateway)
		}
	}
	return gws, nil
}

// WaitFor polls cond every interval until it returns true or the deadline
// passes; it returns the time waited and the last error.
func WaitFor(d, interval time.Duration, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	var last error
	for {
		ok, err := cond()
		if ok {
			return time.Since(start), nil
		}
		last = err
		if time.Since(start) > d {
			if last == nil {
				last = errors.New("condition not met")
			}
			return time.Since(start), fmt.Errorf("after %s: %w", d, last)
		}
		time.Sleep(interval)
	}
}

// proc is a daemon started in a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(ns *labnet.NS, log io.Writer, name, bin string, args ...string) (*proc, error) {
	cmd := ns.Command(context.Background(), bin, args...)
	cmd.Stdout = prefixWriter(log, name)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s in %s: %w", name, ns.Name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(s syscall.Signal) {
	if p.cmd.Process != nil && !p.exited() {
		// The process group: `ip netns exec` execs the daemon, so the
		// group holds exactly the process we started.
		_ = syscall.Kill(-p.cmd.Process.Pid, s)
	}
}

func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type prefixed struct {
	w      io.Writer
	prefix string
}

func prefixWriter(w io.Writer, name string) io.Writer { return &prefixed{w: w, prefix: name + ": "} }

func (p *prefixed) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
