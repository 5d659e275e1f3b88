package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// UpTimeout bounds `lab up`: the first run builds the root filesystem and
// the VM image (minutes); later ones take seconds.
const UpTimeout = 20 * time.Minute

// ResolveDir is the lab directory for a description and an optional
// explicit directory.
func ResolveDir(specFile, dir string) (string, error) {
	if dir == "" {
		s, err := LoadSpec(specFile)
		if err != nil {
			return "", err
		}
		dir = filepath.Join(".cache", "lab", s.Metadata.Name)
	}
	return filepath.Abs(dir)
}

// Up starts the lab in the background (`binary serve`, binary being
// tricenter-lab) and waits until it is ready, copying its progress to out. A
// lab already up in that directory is left as it is (Up is idempotent); one
// whose process died is swept first.
func Up(ctx context.Context, binary string, opts Options, out io.Writer) (*Record, error) {
	s, err := LoadSpec(opts.SpecFile)
	if err != nil {
		return nil, err
	}
	if err := opts.resolve(s); err != nil {
		return nil, err
	}
	if rec, err := ReadRecord(opts.Dir); err == nil {
		if rec.Process().Alive() {
			if rec.SpecFile != opts.SpecFile {
				return nil, fmt.Errorf("lab %s in %s runs %s, not %s: run `tricenter-lab down --dir %s` first", rec.Name, opts.Dir, rec.SpecFile, opts.SpecFile, opts.Dir)
			}
			if rec.Ready {
				fmt.Fprintf(out, "Lab %s is already up (pid %d).\n", rec.Name, rec.PID)
				return rec, nil
			}
			return waitReady(ctx, rec.Process(), opts.Dir, out, 0, nil)
		}
		fmt.Fprintf(out, "Lab %s in %s is not running (its process %d is gone): removing what it left first.\n", rec.Name, opts.Dir, rec.PID)
		if err := Down(ctx, opts.Dir, out); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(Paths{Dir: opts.Dir}.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fi, _ := logf.Stat()
	from := fi.Size()
	cmd := exec.Command(binary, "serve", "-f", opts.SpecFile, "--dir", opts.Dir, "--artifact-dir", opts.ArtifactDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the lab outlives this command and the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the lab process: %w", err)
	}
	st, _ := labnet.ProcStart(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return waitReady(ctx, Proc{PID: cmd.Process.Pid, Start: st}, opts.Dir, out, from, exited)
}

// waitReady waits until the lab process p says in its record that the lab
// is ready, copying the log from offset from to out. exited, when not nil,
// reports the process's exit (it is this command's child); otherwise its
// pid is watched.
func waitReady(ctx context.Context, p Proc, dir string, out io.Writer, from int64, exited <-chan error) (*Record, error) {
	ctx, cancel := context.WithTimeout(ctx, UpTimeout)
	defer cancel()
	cctx, stopCopy := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		copyLines(cctx, Paths{Dir: dir}.Log(), from, out)
		close(done)
	}()
	defer func() {
		stopCopy()
		<-done
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		rec, err := ReadRecord(dir)
		if err == nil && rec.PID == p.PID && rec.Ready {
			time.Sleep(300 * time.Millisecond) // let the log copy catch up
			return rec, nil
		}
		if err == nil && rec.PID == p.PID && rec.Error != "" {
			return nil, fmt.Errorf("lab up failed: %s (log: %s)", rec.Error, Paths{Dir: dir}.Log())
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the lab process exited before the lab was ready (%w); its log (%s) ends:\n%s", err, Paths{Dir: dir}.Log(), logTail(dir, from))
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the lab in %s: %w (it keeps running: `tricenter-lab status`, `tricenter-lab down`)", dir, ctx.Err())
		case <-tick.C:
		}
		if exited == nil && !p.Alive() {
			return nil, fmt.Errorf("the lab process %d exited before the lab was ready: see %s", p.PID, Paths{Dir: dir}.Log())
		}
	}
}

// StopTimeout bounds how long Down waits for the lab process to tear down
// before it kills it and sweeps.
const StopTimeout = 3 * time.Minute

// Down stops the lab in dir and removes everything it made: it asks the lab
// process to tear down, kills it if it does not, then sweeps what a crashed
// lab leaves (processes, machine cgroups, mounts, namespaces, links, VMs,
// libvirtd, the iptables chains its libvirtd made — not LIBVIRT_* chains
// that existed before it started one, nor any when it used a libvirtd it
// did not start), removes the directory and checks that nothing is left.
func Down(ctx context.Context, dir string, out io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	rec, err := ReadRecord(dir)
	if errors.Is(err, ErrNoLab) {
		if _, serr := os.Stat(dir); serr == nil {
			fmt.Fprintf(out, "No lab record in %s: removing the directory.\n", dir)
			return os.RemoveAll(dir)
		}
		fmt.Fprintf(out, "No lab in %s.\n", dir)
		return nil
	}
	if err != nil {
		return err
	}
	start := time.Now()
	if p := rec.Process(); p.Alive() {
		fmt.Fprintf(out, "Stopping lab %s (pid %d)...\n", rec.Name, p.PID)
		_ = syscall.Kill(p.PID, syscall.SIGTERM)
		deadline := time.Now().Add(StopTimeout)
		for p.Alive() && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if p.Alive() {
			fmt.Fprintf(out, "Lab process %d did not stop in %v: killing it.\n", p.PID, StopTimeout)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			for i := 0; i < 50 && p.Alive(); i++ {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	removed, err := sweep(ctx, rec)
	for _, r := range removed {
		fmt.Fprintf(out, "  removed leftover %s\n", r)
	}
	if err != nil {
		return fmt.Errorf("lab %s: removing leftovers: %w", rec.Name, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab %s: removing %s: %w", rec.Name, dir, err)
	}
	left, err := Leftovers(ctx, rec)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("lab %s: still left after down: %s", rec.Name, strings.Join(left, ", "))
	}
	fmt.Fprintf(out, "Lab %s is down: nothing left (%v).\n", rec.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// sweep removes what the lab of rec left behind.
func sweep(ctx context.Context, rec *Record) ([]string, error) {
	var removed []string
	var errs []error
	// Processes outside the namespaces first (BMCs, VM daemons last: the
	// domains go before libvirtd does).
	for _, p := range rec.Procs {
		if strings.HasPrefix(p.What, "ipmi_sim") && p.Alive() {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			removed = append(removed, fmt.Sprintf("process %d (%s)", p.PID, p.What))
		}
	}
	if len(rec.Domains) > 0 || hasLibvirt(rec) {
		r, err := sweepVMs(ctx, rec)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	r, err := nspawn.Sweep(rec.NetID, rec.MachinesID, rec.Dir)
	removed = append(removed, r...)
	if err != nil {
		errs = append(errs, err)
	}
	for _, d := range routerDirs(rec) {
		if _, err := os.Stat(d); err == nil {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "directory "+d)
			}
		}
	}
	for _, p := range rec.Procs {
		if p.Alive() {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			removed = append(removed, fmt.Sprintf("process %d (%s)", p.PID, p.What))
		}
	}
	// Once libvirtd is gone: the chains it made, not those that were
	// there before it started.
	r, err = sweepIptables(rec)
	removed = append(removed, r...)
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

func hasLibvirt(rec *Record) bool {
	for _, p := range rec.Procs {
		if strings.HasPrefix(p.What, "libvirtd") || strings.HasPrefix(p.What, "virtlogd") {
			return true
		}
	}
	return false
}

// Leftovers lists what of the lab of rec still exists: its process and
// every process it started, machine cgroups, mounts, namespaces, links,
// libvirt domains, the iptables chains its libvirtd made
// (iptablesLeftovers), and its directory.
func Leftovers(ctx context.Context, rec *Record) ([]string, error) {
	var left []string
	if p := rec.Process(); p.Alive() {
		left = append(left, fmt.Sprintf("process %d (%s)", p.PID, p.What))
	}
	for _, p := range rec.Procs {
		if p.Alive() {
			left = append(left, fmt.Sprintf("process %d (%s)", p.PID, p.What))
		}
	}
	l, err := nspawn.Leftovers(rec.NetID, rec.MachinesID, rec.Dir)
	if err != nil {
		return nil, err
	}
	left = append(left, l...)
	doms, err := domainLeftovers(ctx, rec)
	if err != nil {
		return nil, err
	}
	left = append(left, doms...)
	chains, err := iptablesLeftovers(rec)
	if err != nil {
		return nil, err
	}
	left = append(left, chains...)
	for _, d := range append([]string{rec.Dir}, routerDirs(rec)...) {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "directory "+d)
		}
	}
	sort.Strings(left)
	return left, nil
}

// logTail is the end of the lab's log written since offset from.
func logTail(dir string, from int64) string {
	b, err := os.ReadFile(Paths{Dir: dir}.Log())
	if err != nil || int64(len(b)) < from {
		return ""
	}
	b = b[from:]
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return strings.TrimSpace(string(b))
}

// routerDirs are the FRR directories of the lab's routers (under the
// temporary directory); names of any other form are ignored.
func routerDirs(rec *Record) []string {
	all := []string{rec.RouterVty}
	for _, c := range rec.CoreRouters {
		all = append(all, c.Vty)
	}
	var out []string
	for _, d := range all {
		d = filepath.Clean(d)
		if d != "." && filepath.Dir(d) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(d), "tricenter-frr-") {
			out = append(out, d)
		}
	}
	return out
}
