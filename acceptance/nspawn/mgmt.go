package nspawn

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// management builds the management network: a bridge with the host's
// address, the router's port on it, and the router's filter that lets only
// the allowed addresses (the jump hosts) through to the racks.
func (l *Lab) management(ctx context.Context, mg *Management, rtrCmd func(...string) error) error {
	if !labRange.Contains(mg.Subnet.Addr()) || !mg.Subnet.Contains(mg.Host) || !mg.Subnet.Contains(mg.Router) {
		return fmt.Errorf("management network %s: it must lie inside %s and hold the host (%s) and the router (%s)", mg.Subnet, labRange, mg.Host, mg.Router)
	}
	var err error
	if l.mgmt, err = l.net.Bridge(netip.PrefixFrom(mg.Host, mg.Subnet.Bits())); err != nil {
		return fmt.Errorf("management network: %w", err)
	}
	if err := l.router.Attach(l.mgmt, "mgmt", netip.PrefixFrom(mg.Router, mg.Subnet.Bits())); err != nil {
		return fmt.Errorf("management network router port: %w", err)
	}
	for _, a := range mg.Allow {
		if err := rtrCmd("iptables", "-w", "-A", "FORWARD", "-i", "mgmt", "-s", a.String(), "-j", "ACCEPT"); err != nil {
			return err
		}
	}
	for _, r := range l.cfg.Cluster.Spec.Racks {
		if err := rtrCmd("iptables", "-w", "-A", "FORWARD", "-i", "mgmt", "-d", netip.MustParsePrefix(r.Subnet).Masked().String(),
			"-j", "REJECT", "--reject-with", "icmp-admin-prohibited"); err != nil {
			return err
		}
	}
	return nil
}

// Bridge returns the Linux bridge of a rack (to attach VMs to), or "".
func (l *Lab) Bridge(rack string) string {
	if b := l.bridges[rack]; b != nil {
		return b.Name
	}
	return ""
}

// RouterPort is the router's interface on a rack's bridge (in
// RouterNamespace; it holds the rack's gateway address), or "".
func (l *Lab) RouterPort(rack string) string { return l.routerPorts[rack] }

// ManagementBridge is the management network's bridge, or "".
func (l *Lab) ManagementBridge() string {
	if l.mgmt == nil {
		return ""
	}
	return l.mgmt.Name
}

// ID is the lab's random id: every namespace and link it makes carries it
// (labnet.Sweep finds them after a crash).
func (l *Lab) ID() string { return l.net.ID() }

// RouterNamespace is the path of the router's network namespace.
func (l *Lab) RouterNamespace() string { return "/run/netns/" + l.router.Name }

// WaitTCP waits until addr accepts TCP connections as seen from the lab's
// router (which reaches every rack even when the host cannot).
func (l *Lab) WaitTCP(ctx context.Context, addr string) error {
	return waitTCPIn(ctx, l.RouterNamespace(), addr)
}

// Extra returns the extra machine of that name (a jump host), or nil.
func (l *Lab) Extra(name string) *Machine {
	if m := l.machines[name]; m != nil && m.extra {
		return m
	}
	return nil
}

// waitTCPIn is waitTCP from inside the network namespace at nsPath, on a
// thread locked to the goroutine that enters the namespace and returns to
// the original one afterwards. A thread that cannot return is not handed
// back to the scheduler (it ends with the goroutine) — and since child
// processes started with Pdeathsig die with the thread that started them,
// threads are only ever given back, never ended, when all went well.
func waitTCPIn(ctx context.Context, nsPath, addr string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("waiting for %s: %w", addr, err)
			return
		}
		defer orig.Close()
		f, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("waiting for %s: %w", addr, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("waiting for %s: entering %s: %w", addr, nsPath, err)
			return
		}
		err = waitTCP(ctx, addr)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
