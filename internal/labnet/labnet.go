// Package labnet builds small test networks out of Linux network namespaces,
// veth pairs and bridges, for integration tests that run real peers (sshd,
// FRR, etcd) as separate hosts on one machine. It needs root and iproute2.
//
// Addresses must come from 198.18.0.0/15. Each test package takes its own
// block so packages can run at the same time:
//
//	198.18.16.0/20  installer (sshd hosts, jump hosts)
//	198.18.32.0/20  bgp (FRR routers, agents)
//	198.19.0.0/16   etcd and the nspawn lab
//
// Nothing is routed or NATed off the machine: bridges get no uplink and
// namespaces no default route out of the lab.
package labnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var labRange = netip.MustParsePrefix("198.18.0.0/15")

// Available reports why namespaces cannot be made here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip (iproute2) is not installed: run make deps")
	}
	return nil
}

// Lab owns every namespace, bridge and link it created and removes them on
// Close. Names carry a random suffix so concurrent labs never clash.
type Lab struct {
	id      string
	mu      sync.Mutex
	n       int
	closers []func() error
}

// New starts an empty lab.
func New() (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return &Lab{id: hex.EncodeToString(b)}, nil
}

// ID is the lab's random suffix: every namespace ("tc-HINT-ID-N") and
// link ("tcbIDN", "tchIDN", ...) it creates carries it, so a teardown
// after a crash can find them (Sweep).
func (l *Lab) ID() string { return l.id }

// name returns a unique interface-safe name (at most 15 bytes).
func (l *Lab) name(prefix string) string {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	s := fmt.Sprintf("%s%s%d", prefix, l.id, n)
	if len(s) > 15 {
		s = s[len(s)-15:]
	}
	return s
}

func (l *Lab) onClose(f func() error) {
	l.mu.Lock()
	l.closers = append(l.closers, f)
	l.mu.Unlock()
}

// Close removes everything in reverse order of creation.
func (l *Lab) Close() error {
	l.mu.Lock()
	cs := l.closers
	l.closers = nil
	l.mu.Unlock()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func checkLab(p netip.Prefix) error {
	if !labRange.Contains(p.Addr()) {
		return fmt.Errorf("address %s is outside the lab range %s", p, labRange)
	}
	return nil
}

// NS is a network namespace: one test host.
type NS struct {
	Name string
	lab  *Lab

	mu        sync.Mutex
	hostLinks map[string]string // ifname in the namespace → bridge-side veth
}

// Namespace creates a namespace with loopback up.
func (l *Lab) Namespace(hint string) (*NS, error) {
	name := "tc-" + hint + "-" + l.id
	l.mu.Lock()
	l.n++
	name = fmt.Sprintf("%s-%d", name, l.n)
	l.mu.Unlock()
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	l.onClose(func() error { return ip("netns", "del", name) })
	ns := &NS{Name: name, lab: l}
	if err := ns.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return ns, nil
}

// IP runs `ip ARGS` inside the namespace.
func (n *NS) IP(args ...string) error {
	return ip(append([]string{"-n", n.Name}, args...)...)
}

// Command returns a command that runs inside the namespace. The caller
// starts it and must Wait on it.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Bridge is a layer-2 segment in the root namespace (a rack, a site link).
type Bridge struct {
	Name string
	lab  *Lab
}

// Bridge creates a bridge. With a valid addr the root namespace gets that
// address on it (so the test process itself can reach the hosts).
func (l *Lab) Bridge(addr netip.Prefix) (*Bridge, error) {
	if addr.IsValid() {
		if err := checkLab(addr); err != nil {
			return nil, err
		}
		if err := notOnHost(addr); err != nil {
			return nil, err
		}
	}
	name := l.name("tcb")
	if err := ip("link", "add", name, "type", "bridge"); err != nil {
		return nil, err
	}
	l.onClose(func() error { return ip("link", "del", name) })
	if addr.IsValid() {
		if err := ip("addr", "add", addr.String(), "dev", name); err != nil {
			return nil, err
		}
	}
	if err := ip("link", "set", name, "up"); err != nil {
		return nil, err
	}
	return &Bridge{Name: name, lab: l}, nil
}

// notOnHost fails when a link of the root namespace already has an
// address in addr's subnet (the same prefix): the host would route the test's traffic to
// whichever link the kernel picks, and the test would time out against a
// network that is not its own. The usual cause is a test network left by
// a test process that was killed; the error names the link.
func notOnHost(addr netip.Prefix) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("listing the host's links: %w", err)
	}
	subnet := addr.Masked()
	for _, ifc := range ifs {
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			have, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			other := netip.PrefixFrom(have.Unmap(), ones).Masked()
			if other == subnet {
				hint := ""
				if strings.HasPrefix(ifc.Name, "tc") {
					hint = fmt.Sprintf(" (a test network whose process was killed: remove it with ip link del %s and its tc-* namespaces with ip netns del)", ifc.Name)
				}
				return fmt.Errorf("the test subnet %s is already on the host's link %s as %s%s", subnet, ifc.Name, other, hint)
			}
		}
	}
	return nil
}

// Attach plugs the namespace into the bridge through a veth pair and gives
// the namespace side addr, named ifname inside the namespace.
func (n *NS) Attach(b *Bridge, ifname string, addr netip.Prefix) error {
	if err := checkLab(addr); err != nil {
		return err
	}
	host, peer := n.lab.name("tch"), n.lab.name("tcp")
	if err := ip("link", "add", host, "type", "veth", "peer", "name", peer); err != nil {
		return err
	}
	n.lab.onClose(func() error {
		// Deleting the namespace already removed the pair; ignore that case.
		if exec.Command("ip", "link", "show", host).Run() != nil {
			return nil
		}
		return ip("link", "del", host)
	})
	steps := [][]string{
		{"link", "set", host, "master", b.Name},
		{"link", "set", host, "up"},
		{"link", "set", peer, "netns", n.Name},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	if err := n.setup(peer, ifname, addr); err != nil {
		return err
	}
	n.mu.Lock()
	if n.hostLinks == nil {
		n.hostLinks = map[string]string{}
	}
	n.hostLinks[ifname] = host
	n.mu.Unlock()
	return nil
}

// HostLink returns the bridge side of the veth pair Attach made for
// ifname (the name of the link in the root namespace), or "".
func (n *NS) HostLink(ifname string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hostLinks[ifname]
}

// SetPortUp brings the bridge side of ifname's veth pair up or down. Down,
// the namespace is cut off like a host whose cable was pulled: nothing it
// sends leaves its link and nothing reaches it, and no peer is told.
func (n *NS) SetPortUp(ifname string, up bool) error {
	host := n.HostLink(ifname)
	if host == "" {
		return fmt.Errorf("namespace %s has no bridge port for %s", n.Name, ifname)
	}
	state := "down"
	if up {
		state = "up"
	}
	return ip("link", "set", host, state)
}

func (n *NS) setup(peer, ifname string, addr netip.Prefix) error {
	steps := [][]string{
		{"link", "set", peer, "name", ifname},
		{"addr", "add", addr.String(), "dev", ifname},
		{"link", "set", ifname, "up"},
	}
	for _, s := range steps {
		if err := n.IP(s...); err != nil {
			return err
		}
	}
	return nil
}

// Link joins two namespaces with a point-to-point veth pair.
func (l *Lab) Link(a *NS, aIf string, aAddr netip.Prefix, b *NS, bIf string, bAddr netip.Prefix) error {
	if err := checkLab(aAddr); err != nil {
		return err
	}
	if err := checkLab(bAddr); err != nil {
		return err
	}
	x, y := l.name("tcx"), l.name("tcy")
	if err := ip("link", "add", x, "type", "veth", "peer", "name", y); err != nil {
		return err
	}
	if err := ip("link", "set", x, "netns", a.Name); err != nil {
		return err
	}
	if err := ip("link", "set", y, "netns", b.Name); err != nil {
		return err
	}
	if err := a.setup(x, aIf, aAddr); err != nil {
		return err
	}
	return b.setup(y, bIf, bAddr)
}

// Route adds a route inside the namespace (e.g. to another lab subnet).
// Routes must stay inside the lab range.
func (n *NS) Route(dst netip.Prefix, via netip.Addr) error {
	if err := checkLab(dst); err != nil {
		return err
	}
	return n.IP("route", "add", dst.String(), "via", via.String())
}

// leftovers lists the namespaces and links whose names carry the lab id.
func leftovers(id string) (namespaces, links []string, err error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("listing namespaces: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "tc-") && strings.Contains(f[0], "-"+id+"-") {
			namespaces = append(namespaces, f[0])
		}
	}
	out, err = exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("listing links: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if len(name) >= 3 && strings.HasPrefix(name, "tc") && strings.HasPrefix(name[3:], id) {
			links = append(links, name)
		}
	}
	return namespaces, links, nil
}

// Sweep removes what a lab with this id left behind when its process died
// before Close: every process in its namespaces (killed), the namespaces
// and every link whose name carries the id. It returns what it removed.
func Sweep(id string) ([]string, error) {
	if len(id) < 6 {
		return nil, fmt.Errorf("lab id %q is too short to sweep safely", id)
	}
	namespaces, _, err := leftovers(id)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, ns := range namespaces {
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ip("netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "namespace "+ns)
	}
	// Deleting a namespace takes its ends of veth pairs, and their peers.
	_, links, err := leftovers(id)
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, name := range links {
		if err := ip("link", "del", name); err != nil {
			// The peer of a pair already removed goes with it.
			if exec.Command("ip", "link", "show", name).Run() == nil {
				errs = append(errs, err)
			}
			continue
		}
		removed = append(removed, "link "+name)
	}
	return removed, errors.Join(errs...)
}

// Leftovers lists the namespaces and links a lab with this id still has.
func Leftovers(id string) ([]string, error) {
	namespaces, links, err := leftovers(id)
	if err != nil {
		return nil, err
	}
	var left []string
	for _, ns := range namespaces {
		left = append(left, "namespace "+ns)
	}
	for _, l := range links {
		left = append(left, "link "+l)
	}
	return left, nil
}
