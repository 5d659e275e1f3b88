package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/libvirt"
	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// vmTier is the lab's libvirt VMs and the libvirtd they run under.
type vmTier struct {
	daemon *libvirt.Daemon
	img    *libvirt.Image
	dir    string
	prefix string
	doms   map[string]*libvirt.Domain
	order  []string
	pxe    *libvirt.PXE
}

// domainPrefix names a lab's domains: "tricenter-lab-NAME-SERVER".
func domainPrefix(lab string) string { return "tricenter-lab-" + lab + "-" }

func startVMTier(ctx context.Context, cache string, p Paths, log *slog.Logger) (*vmTier, error) {
	if err := libvirt.Available(); err != nil {
		return nil, fmt.Errorf("the lab description has libvirt VMs: %w", err)
	}
	img, err := libvirt.EnsureImage(ctx, cache, log)
	if err != nil {
		return nil, err
	}
	d, err := libvirt.StartDaemon(ctx, p.Libvirt(), log)
	if err != nil {
		return nil, err
	}
	rec, _ := ReadRecord(p.Dir)
	name := ""
	if rec != nil {
		name = rec.Name
	}
	return &vmTier{daemon: d, img: img, dir: p.VMs(), prefix: domainPrefix(name), doms: map[string]*libvirt.Domain{}}, nil
}

func (v *vmTier) procs() []Proc {
	var out []Proc
	for _, pid := range v.daemon.Pids() {
		st, _ := labnet.ProcStart(pid)
		what := "libvirt daemon"
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			what = strings.TrimSpace(string(b))
		}
		out = append(out, Proc{PID: pid, Start: st, What: what})
	}
	return out
}

// define makes the VMs (powered off) on their racks' bridges and returns
// their known_hosts lines.
func (v *vmTier) define(ctx context.Context, plan Plan, names []string, nl *nspawn.Lab, pub []byte, memMiB, vcpus int) ([]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var known []string
	for i, sv := range plan.Servers {
		if !want[sv.Name] {
			continue
		}
		br := nl.Bridge(sv.Rack)
		if br == "" {
			return known, fmt.Errorf("server %s: rack %s has no bridge", sv.Name, sv.Rack)
		}
		d, err := libvirt.Define(ctx, v.img, libvirt.DomainConfig{
			Name: v.prefix + sv.Name, Dir: filepath.Join(v.dir, sv.Name), Bridge: br,
			MAC:     fmt.Sprintf("52:54:00:7c:%02x:%02x", i/256, i%256),
			Address: netip.PrefixFrom(sv.Address, sv.Bits), Gateway: sv.Gateway, Hostname: sv.Name,
			AuthorizedKey: pub, MemoryMiB: memMiB, VCPUs: vcpus,
		})
		if err != nil {
			return known, fmt.Errorf("server %s: %w", sv.Name, err)
		}
		v.doms[sv.Name] = d
		v.order = append(v.order, sv.Name)
		f := strings.Fields(d.HostKey())
		if len(f) < 2 {
			return known, fmt.Errorf("server %s: VM has no host key", sv.Name)
		}
		known = append(known, sv.Address.String()+" "+f[0]+" "+f[1])
	}
	return known, nil
}

// servePXE starts the racks' network boot service for the VMs: dnsmasq in
// the lab router, on the ports of the racks that hold VMs (their
// gateways), as a TOR's DHCP relay to a provisioning server would.
func (v *vmTier) servePXE(ctx context.Context, plan Plan, nl *nspawn.Lab, dir string, log *slog.Logger) (Proc, error) {
	var ifs []string
	seen := map[string]bool{}
	var doms []*libvirt.Domain
	for _, sv := range plan.Servers {
		d := v.doms[sv.Name]
		if d == nil {
			continue
		}
		doms = append(doms, d)
		if port := nl.RouterPort(sv.Rack); port != "" && !seen[port] {
			seen[port] = true
			ifs = append(ifs, port)
		}
	}
	var err error
	v.pxe, err = libvirt.StartPXE(ctx, libvirt.PXEConfig{Netns: nl.RouterNamespace(), Interfaces: ifs, Dir: dir,
		Domains: doms, Image: v.img, Logger: log})
	if err != nil {
		return Proc{}, fmt.Errorf("network boot for the VMs: %w", err)
	}
	st, _ := labnet.ProcStart(v.pxe.Pid())
	return Proc{PID: v.pxe.Pid(), Start: st, What: "dnsmasq (PXE)"}, nil
}

func (v *vmTier) domainNames() []string {
	var out []string
	for _, n := range v.order {
		out = append(out, v.doms[n].Name())
	}
	return out
}

func (v *vmTier) power(server string) ipmisim.Power { return v.doms[server].Power() }

func (v *vmTier) close() error {
	var errs []error
	if v.pxe != nil {
		if err := v.pxe.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range v.order {
		if err := v.doms[n].Undefine(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", n, err))
		}
	}
	if err := v.daemon.Stop(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sweepVMs removes the domains of a lab whose process died: through
// libvirtd while it still runs, else by their qemu pid files and
// definitions.
func sweepVMs(ctx context.Context, rec *Record) ([]string, error) {
	var removed []string
	var errs []error
	prefix := domainPrefix(rec.Name)
	if libvirt.Available() == nil {
		if doms, err := libvirt.ListDomains(ctx, prefix); err == nil {
			for _, d := range doms {
				if err := libvirt.UndefineDomain(ctx, d); err != nil {
					errs = append(errs, err)
					continue
				}
				removed = append(removed, "domain "+d)
			}
		}
	}
	for _, f := range domainFiles(prefix) {
		if strings.HasSuffix(f, ".pid") {
			if b, err := os.ReadFile(f); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					removed = append(removed, fmt.Sprintf("qemu process %d", pid))
				}
			}
		}
		if err := os.Remove(f); err == nil {
			removed = append(removed, "file "+f)
		}
	}
	return removed, errors.Join(errs...)
}

// domainFiles are libvirt's files of the lab's domains: definitions and
// runtime state (pid files, XML of running domains).
func domainFiles(prefix string) []string {
	var out []string
	for _, dir := range []string{"/etc/libvirt/qemu", "/run/libvirt/qemu", "/var/lib/libvirt/qemu"} {
		m, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
		out = append(out, m...)
	}
	return out
}

func domainLeftovers(_ context.Context, rec *Record) ([]string, error) {
	var left []string
	for _, f := range domainFiles(domainPrefix(rec.Name)) {
		left = append(left, "libvirt file "+f)
	}
	return left, nil
}

// sweepIptables removes the LIBVIRT_* iptables chains the lab's libvirtd
// left: those that appeared after the lab recorded the ones that existed,
// right before it started libvirtd. The record is a file in the lab's
// directory, written before libvirtd starts, so a lab that died before its
// lab.json named it is covered too. A lab that started no libvirtd has no
// record and removes no chain; nor does one whose libvirtd stopped cleanly
// (Stop removed its chains and the record).
func sweepIptables(rec *Record) ([]string, error) {
	chains, err := libvirt.SweepIptablesChains(Paths{Dir: rec.Dir}.Libvirt())
	var removed []string
	for _, c := range chains {
		removed = append(removed, "iptables chain "+c.String())
	}
	if err != nil {
		return removed, fmt.Errorf("libvirt's iptables chains: %w", err)
	}
	return removed, nil
}

// iptablesLeftovers lists the LIBVIRT_* iptables chains of the lab's that
// are still there: those not in the record of the chains that existed
// before its libvirtd started (lab.json, or the file in the lab's directory
// when the lab died before writing it there). A lab that started no
// libvirtd has none.
func iptablesLeftovers(rec *Record) ([]string, error) {
	snap := rec.LibvirtIptables
	if snap == nil {
		var err error
		if snap, err = libvirt.ReadIptablesSnapshot(Paths{Dir: rec.Dir}.Libvirt()); err != nil {
			return nil, err
		}
	}
	if snap == nil {
		return nil, nil
	}
	now, err := libvirt.IptablesChains()
	if err != nil {
		return nil, err
	}
	var left []string
	for _, c := range libvirt.NewIptablesChains(snap.Chains, now) {
		left = append(left, "iptables chain "+c.String())
	}
	return left, nil
}
