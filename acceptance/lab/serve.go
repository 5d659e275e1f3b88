package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// Options say which lab to run and where.
type Options struct {
	// SpecFile is the lab description.
	SpecFile string
	// Dir is the lab's directory (default .cache/lab/NAME); made absolute.
	Dir string
	// ArtifactDir is written into the inventory (default .cache/artifacts).
	ArtifactDir string
	Logger      *slog.Logger
}

func (o *Options) resolve(s *Spec) error {
	if o.Dir == "" {
		o.Dir = filepath.Join(".cache", "lab", s.Metadata.Name)
	}
	if o.ArtifactDir == "" {
		o.ArtifactDir = filepath.Join(".cache", "artifacts")
	}
	var err error
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return err
	}
	if o.ArtifactDir, err = filepath.Abs(o.ArtifactDir); err != nil {
		return err
	}
	if o.SpecFile, err = filepath.Abs(o.SpecFile); err != nil {
		return err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// running is a lab being served.
type running struct {
	opts   Options
	spec   *Spec
	paths  Paths
	plan   Plan
	log    *slog.Logger
	rec    *Record
	nspawn *nspawn.Lab
	vms    *vmTier
	bmcs   []*ipmisim.BMC
	fifo   *os.File

	mu       sync.Mutex
	workers  map[string]chan string
	booting  map[string]bool
	powerSet map[string]string
}

// Serve brings the lab up and keeps it until ctx ends, then tears it down.
// It is the body of `tricenter-lab serve` (started in the background by
// Up); the lab's record (lab.json) says when it is ready.
func Serve(ctx context.Context, opts Options) (err error) {
	s, err := LoadSpec(opts.SpecFile)
	if err != nil {
		return err
	}
	if err := opts.resolve(s); err != nil {
		return err
	}
	r := &running{opts: opts, spec: s, paths: Paths{Dir: opts.Dir}, plan: s.Plan(), log: opts.Logger,
		workers: map[string]chan string{}, booting: map[string]bool{}, powerSet: map[string]string{}}
	start := time.Now()
	if err := os.MkdirAll(filepath.Join(opts.Dir, "power"), 0o755); err != nil {
		return err
	}
	self, err := labnet.ProcStart(os.Getpid())
	if err != nil {
		return err
	}
	r.rec = &Record{Name: s.Metadata.Name, SpecFile: opts.SpecFile, Dir: opts.Dir, PID: os.Getpid(), PIDStart: self,
		Started: start.UTC()}
	if err := r.rec.save(r.paths); err != nil {
		return err
	}
	defer func() {
		if cerr := r.teardown(); cerr != nil {
			r.log.Error("Tearing the lab down", "err", cerr)
			err = errors.Join(err, cerr)
		}
	}()
	if err := r.up(ctx); err != nil {
		r.rec.Error = err.Error()
		_ = r.rec.save(r.paths)
		return err
	}
	r.rec.Ready = true
	r.rec.UpTook = time.Since(start).Round(time.Millisecond).String()
	if err := r.rec.save(r.paths); err != nil {
		return err
	}
	r.log.Info("Lab up", "name", s.Metadata.Name, "took", r.rec.UpTook)
	r.serve(ctx)
	return nil
}

func (r *running) up(ctx context.Context) error {
	s, p := r.spec, r.paths
	if err := ensurePassword(p.BMCPassword()); err != nil {
		return err
	}
	password, err := os.ReadFile(p.BMCPassword())
	if err != nil {
		return err
	}
	invYAML, cluster, err := s.Inventory(r.opts.Dir, r.opts.ArtifactDir)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(p.Inventory(), invYAML, 0o644); err != nil {
		return err
	}
	cache, err := nspawn.CacheDir()
	if err != nil {
		return err
	}
	r.log.Info("Preparing the machines' root filesystem (built once, then cached)")
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, r.log)
	if err != nil {
		return err
	}
	vmNames := s.VMs()
	skip := map[string]bool{}
	for _, n := range vmNames {
		skip[n] = true
	}
	if len(vmNames) > 0 {
		r.log.Info("Preparing the VM image and libvirtd", "vms", len(vmNames))
		if r.vms, err = startVMTier(ctx, cache, r.paths, r.log); err != nil {
			return err
		}
		r.rec.Procs = append(r.rec.Procs, r.vms.procs()...)
		r.rec.LibvirtIptables = r.vms.daemon.IptablesBefore()
		if err := r.rec.save(p); err != nil {
			return err
		}
	}
	var extra []nspawn.Extra
	var allow []netip.Addr
	for _, c := range s.Spec.Centers {
		extra = append(extra, nspawn.Extra{Name: r.plan.JumpName[c.Name], Address: r.plan.Jump[c.Name]})
		allow = append(allow, r.plan.Jump[c.Name])
	}
	var cores []nspawn.CoreRouter
	var transit netip.Prefix
	for _, c := range s.Spec.CoreRouters.Routers {
		cores = append(cores, nspawn.CoreRouter{Name: c.Name, Site: c.Site, ASN: c.ASN})
	}
	if len(cores) > 0 {
		transit = netip.MustParsePrefix(s.Spec.CoreRouters.Transit)
	}
	r.log.Info("Building the networks, the routers and the jump hosts")
	r.nspawn, err = nspawn.Up(ctx, nspawn.Config{Cluster: cluster, Rootfs: rootfs, Dir: p.Machines(),
		KeyFile: p.Key(), KnownHosts: p.KnownHosts(), Logger: r.log,
		Management: &nspawn.Management{Subnet: r.plan.Management, Host: r.plan.Host, Router: r.plan.Router, Allow: allow},
		PoweredOff: true, Skip: skip, Extra: extra, CoreRouters: cores, CoreTransit: transit})
	if err != nil {
		return err
	}
	r.rec.NetID, r.rec.MachinesID = r.nspawn.ID(), r.nspawn.MachinesID()
	if err := r.rec.save(p); err != nil {
		return err
	}
	if r.vms != nil {
		pub, err := os.ReadFile(p.Key() + ".pub")
		if err != nil {
			return err
		}
		lines, err := r.vms.define(ctx, r.plan, vmNames, r.nspawn, pub, s.Spec.VM.MemoryMiB, s.Spec.VM.VCPUs)
		r.rec.Domains = r.vms.domainNames()
		_ = r.rec.save(p)
		if err != nil {
			return err
		}
		if err := appendKnownHosts(p.KnownHosts(), lines); err != nil {
			return err
		}
		proc, err := r.vms.servePXE(ctx, r.plan, r.nspawn, p.PXE(), r.log)
		if err != nil {
			return err
		}
		r.rec.Procs = append(r.rec.Procs, proc)
		r.rec.PXELog = r.vms.pxe.LogFile()
		if err := r.rec.save(p); err != nil {
			return err
		}
	}
	if err := r.nspawn.RouteClusterFromHost(ctx); err != nil {
		return err
	}
	// The BMCs live on the management network, as out-of-band BMCs do.
	for _, sv := range r.plan.Servers {
		if out, err := exec.CommandContext(ctx, "ip", "addr", "add", netip.PrefixFrom(sv.BMC, r.plan.Management.Bits()).String(),
			"dev", r.nspawn.ManagementBridge()).CombinedOutput(); err != nil {
			return fmt.Errorf("server %s: BMC address %s: %w: %s", sv.Name, sv.BMC, err, out)
		}
	}
	if err := r.openFIFO(); err != nil {
		return err
	}
	var cfgs []ipmisim.Config
	for _, sv := range r.plan.Servers {
		power := r.machinePower(sv.Name)
		if sv.Machine == MachineLibvirt {
			power = r.vms.power(sv.Name)
		} else if err := r.setPower(sv.Name, "off"); err != nil {
			return err
		}
		cfgs = append(cfgs, ipmisim.Config{Name: sv.Name, Address: sv.BMC, User: BMCUser, Password: strings.TrimSpace(string(password)),
			Dir: p.BMCs(), Sensors: ipmisim.DefaultSensors(), Power: power,
			FRU: &ipmisim.FRU{Manufacturer: "tricenter lab", Product: "lab " + sv.Machine, Serial: "LAB-" + sv.Name,
				BoardManufacturer: "tricenter lab", BoardProduct: "lab " + sv.Machine, BoardSerial: "LAB-" + sv.Name}})
	}
	if err := os.MkdirAll(p.BMCs(), 0o700); err != nil {
		return err
	}
	r.log.Info("Starting the BMCs", "count", len(cfgs))
	if r.bmcs, err = ipmisim.StartAll(ctx, cfgs, 4); err != nil {
		return err
	}
	for _, b := range r.bmcs {
		st, _ := labnet.ProcStart(b.Pid())
		r.rec.Procs = append(r.rec.Procs, Proc{PID: b.Pid(), Start: st, What: "ipmi_sim " + b.Name()})
	}
	r.fillRecord()
	if err := fsutil.WriteFileAtomic(p.TFVars(), s.TFVars(r.opts.Dir), 0o644); err != nil {
		return err
	}
	return r.rec.save(p)
}

func (r *running) fillRecord() {
	r.rec.Servers = nil
	for _, sv := range r.plan.Servers {
		r.rec.Servers = append(r.rec.Servers, RecordServer{Name: sv.Name, Center: sv.Center, Rack: sv.Rack, Machine: sv.Machine, Boot: sv.Boot,
			Address: sv.Address.String(), BMC: sv.BMC.String(), Roles: sv.Roles})
	}
	r.rec.JumpHosts = nil
	for _, c := range r.spec.Spec.Centers {
		r.rec.JumpHosts = append(r.rec.JumpHosts, RecordJump{Name: r.plan.JumpName[c.Name], Center: c.Name, Address: r.plan.Jump[c.Name].String()})
	}
	if rt := r.nspawn.Router(); rt != nil {
		r.rec.RouterVty = rt.Dir
	}
	r.rec.CoreRouters = nil
	for i, c := range r.nspawn.Cores() {
		spec := r.spec.Spec.CoreRouters.Routers[i]
		r.rec.CoreRouters = append(r.rec.CoreRouters, RecordCore{Name: spec.Name, Site: spec.Site, ASN: spec.ASN, Vty: c.Dir, Netns: c.NS.Name})
	}
	r.rec.APIVIP = r.spec.Spec.Network.APIVIP
	r.rec.Inventory = r.paths.Inventory()
	r.rec.TFVars = r.paths.TFVars()
}

// machinePower is the BMC hook of an nspawn machine: power requests go to
// this process through the FIFO (power on boots the machine, power off
// cuts it), and the power state is the file this process keeps.
func (r *running) machinePower(server string) ipmisim.Power {
	req := func(op string) string {
		return fmt.Sprintf(`timeout 5 sh -c 'echo "%s %s" > "$1"' sh %s`, server, op, shell.Quote(r.paths.PowerFIFO()))
	}
	return ipmisim.Power{
		On: req("on"), Off: req("off"), SoftOff: req("soft-off"), Reset: req("reset"),
		Status: fmt.Sprintf(`read -r v < %s && [ "$v" = on ]`, shell.Quote(r.paths.PowerState(server))),
	}
}

func (r *running) setPower(server, state string) error {
	r.mu.Lock()
	r.powerSet[server] = state
	r.mu.Unlock()
	return fsutil.WriteFileAtomic(r.paths.PowerState(server), []byte(state+"\n"), 0o644)
}

func (r *running) openFIFO() error {
	path := r.paths.PowerFIFO()
	_ = os.Remove(path)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("power requests FIFO %s: %w", path, err)
	}
	// Read-write: the FIFO never reports EOF when a hook's writer closes.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	r.fifo = f
	return nil
}

// serve handles power requests until ctx ends.
func (r *running) serve(ctx context.Context) {
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r.fifo)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-lines:
			if !ok {
				return
			}
			f := strings.Fields(l)
			if len(f) != 2 || r.nspawn.Machine(f[0]) == nil {
				r.log.Warn("Ignoring a malformed power request", "request", l)
				continue
			}
			r.worker(ctx, f[0]) <- f[1]
		case <-tick.C:
			r.watch()
		}
	}
}

// watch marks machines that stopped on their own (a shutdown inside) off.
func (r *running) watch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, st := range r.powerSet {
		if st == "on" && !r.booting[name] && !r.nspawn.Machine(name).Running() {
			r.powerSet[name] = "off"
			_ = fsutil.WriteFileAtomic(r.paths.PowerState(name), []byte("off\n"), 0o644)
			r.log.Info("Machine stopped", "server", name)
		}
	}
}

// worker returns the machine's request queue: its requests run in order.
func (r *running) worker(ctx context.Context, name string) chan string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch := r.workers[name]; ch != nil {
		return ch
	}
	ch := make(chan string, 16)
	r.workers[name] = ch
	m := r.nspawn.Machine(name)
	go func() {
		for {
			var op string
			select {
			case <-ctx.Done():
				return
			case op = <-ch:
			}
			t := time.Now()
			var err error
			switch op {
			case "on":
				err = r.powerOn(ctx, name)
			case "off":
				err = m.PowerOff(ctx)
				if err == nil {
					err = r.setPower(name, "off")
				}
			case "soft-off":
				err = m.Shutdown(ctx)
				if err == nil {
					err = r.setPower(name, "off")
				}
			case "reset":
				if err = m.PowerOff(ctx); err == nil {
					err = r.powerOn(ctx, name)
				}
			default:
				err = fmt.Errorf("unknown power request %q", op)
			}
			if err != nil {
				r.log.Error("Power request failed", "server", name, "request", op, "err", err)
				continue
			}
			r.log.Info("Power", "server", name, "request", op, "took", time.Since(t).Round(time.Millisecond))
		}
	}()
	return ch
}

func (r *running) powerOn(ctx context.Context, name string) error {
	r.mu.Lock()
	r.booting[name] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.booting[name] = false
		r.mu.Unlock()
	}()
	// Power is on from the moment the BMC turns it on; the OS boots after.
	if err := r.setPower(name, "on"); err != nil {
		return err
	}
	return r.nspawn.Machine(name).Start(ctx)
}

// teardown stops the BMCs, the VMs and the machines and removes the
// networks; Down removes the directory.
func (r *running) teardown() error {
	var errs []error
	ipmisim.StopAll(r.bmcs)
	if r.fifo != nil {
		r.fifo.Close()
	}
	if r.vms != nil {
		if err := r.vms.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.nspawn != nil {
		if err := r.nspawn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	r.rec.Ready = false
	r.rec.Stopped = true
	_ = r.rec.save(r.paths)
	return errors.Join(errs...)
}

func ensurePassword(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

func appendKnownHosts(path string, lines []string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	all := strings.Split(strings.TrimSpace(string(old)), "\n")
	all = append(all, lines...)
	sort.Strings(all)
	return fsutil.WriteFileAtomic(path, []byte(strings.Join(all, "\n")+"\n"), 0o644)
}

// copyLines streams what is appended to the file at path to w until ctx
// ends (progress of a background lab while Up waits).
func copyLines(ctx context.Context, path string, from int64, w io.Writer) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return
	}
	rd := bufio.NewReader(f)
	for {
		line, err := rd.ReadString('\n')
		if line != "" && strings.HasSuffix(line, "\n") {
			fmt.Fprint(w, line)
			continue
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if line != "" {
				// A partial line: read it again once complete.
				if _, err := f.Seek(-int64(len(line)), io.SeekCurrent); err != nil {
					return
				}
				rd.Reset(f)
			}
		}
	}
}
