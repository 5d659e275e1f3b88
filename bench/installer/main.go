// Command installer is the installer benchmark (bench/installer.sh): it
// starts 50 real sshd hosts (installer/sshtest), then pushes a 64 MiB
// artifact and runs 5 commands on every host with tricenter's engine, with
// Ansible (ansible-core: copy + command modules, forks=50, pipelining on),
// and measures the raw floor (50 parallel `ssh host 'cat > /dev/null' <
// file`). It prints the three times and the ratios, then tricenter's
// converged re-run. With -steps it times each building block of an upload
// instead (steps.go).
//
// With -serve it only starts a lab (targets behind a jump host), writes an
// inventory and waits for Ctrl-C: for trying bin/tricenter ssh-check and
// exec by hand.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
)

// The benchmark's labs use 198.18.28.0/22 (see installer/sshtest).
var block = netip.MustParsePrefix("198.18.28.0/22")

func main() {
	hosts := flag.Int("hosts", 50, "sshd hosts")
	sizeMiB := flag.Int("size", 64, "artifact size in MiB")
	commands := flag.Int("commands", 5, "commands run on every host after the upload")
	skipAnsible := flag.Bool("skip-ansible", false, "leave Ansible out")
	serve := flag.Bool("serve", false, "start a lab behind a jump host, write its inventory, wait for Ctrl-C")
	sharedRoot := flag.Bool("shared-root", false, "keep this machine's /root (and its shell rc files) as every host's root home")
	concurrency := flag.Int("concurrency", 0, "tricenter's host concurrency (default: every host at once, like Ansible's forks)")
	ab := flag.Int("ab", 0, "with -steps: only the transfers (SFTP, exec stream, the engine's put), alternating this many times")
	stepsMode := flag.Bool("steps", false, "time each building block of an upload (one at a time on all hosts) instead")
	flag.Parse()
	var err error
	switch {
	case *serve:
		err = serveLab(*hosts)
	case *stepsMode:
		err = steps(*hosts, *sizeMiB, *commands, *sharedRoot, *ab)
	default:
		err = bench(*hosts, *sizeMiB, *commands, *concurrency, *skipAnsible, *sharedRoot)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func serveLab(n int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := sshtest.Start(ctx, sshtest.Options{Block: block, Hosts: n, Jump: true})
	if err != nil {
		return err
	}
	defer l.Close()
	inv := filepath.Join(l.Dir, "inventory.yaml")
	if err := l.WriteInventory(inv, sshtest.ClusterOptions{User: "deploy"}); err != nil {
		return err
	}
	fmt.Printf("lab up: %d hosts behind jump host %s\ninventory: %s\ntry: bin/tricenter ssh-check -f %s\nCtrl-C stops the lab\n",
		n, l.Jump.Addr, inv, inv)
	<-ctx.Done()
	return nil
}

type result struct {
	name string
	d    time.Duration
	cpu  time.Duration // client-side CPU (this process and waited children)
	err  error
}

func cpuNow() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration {
		return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
	}
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

func bench(n, sizeMiB, commands, concurrency int, skipAnsible, sharedRoot bool) error {
	if concurrency <= 0 {
		concurrency = n
	}
	ctx := context.Background()
	start, load0 := time.Now(), loadavg()
	l, err := sshtest.Start(ctx, sshtest.Options{Block: block, Hosts: n, TmpfsSize: fmt.Sprintf("%dm", sizeMiB*3+64)})
	if err != nil {
		return err
	}
	defer l.Close()
	if !sharedRoot {
		if err := freshRoots(l); err != nil {
			return err
		}
	}
	fmt.Printf("lab: %d sshd hosts up in %s\n", n, time.Since(start).Round(time.Millisecond))
	work, err := os.MkdirTemp("", "tricenter-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	artifact := filepath.Join(work, "artifact.bin")
	if err := writeRandom(artifact, int64(sizeMiB)<<20); err != nil {
		return err
	}
	cmds := make([]string, commands)
	for i := range cmds {
		cmds[i] = fmt.Sprintf("test -s /srv/bench/artifact.bin && echo step-%d", i+1)
	}
	var results []result
	floor := timed("raw ssh floor", func() error { return rawFloor(l, artifact) })
	results = append(results, floor)
	var tl, tl2 timeline
	tri := timed("tricenter", func() error { return tricenter(l, artifact, cmds, concurrency, &tl) })
	results = append(results, tri)
	tl.print("tricenter")
	// The same again: every file is already right (hashed on the host, not
	// sent), the commands run.
	results = append(results, timed("tricenter re-run", func() error { return tricenter(l, artifact, cmds, concurrency, &tl2) }))
	tl2.print("tricenter re-run")
	if err := clean(l); err != nil {
		return err
	}
	if !skipAnsible {
		results = append(results, timed("ansible", func() error { return ansible(l, work, artifact, cmds) }))
	}
	home := "own root home per host, as installed"
	if sharedRoot {
		home = "root home shared with this machine"
	}
	fmt.Printf("\npush %d MiB + run %d commands on %d hosts (%d cores, load average %s before, %s after, real sshd per host, %s)\n\n",
		sizeMiB, commands, n, runtime.NumCPU(), load0, loadavg(), home)
	fmt.Printf("%-30s %10s %14s %14s %14s\n", "contender", "time", "vs tricenter", "vs raw floor", "client CPU")
	for _, r := range results {
		if r.err != nil {
			fmt.Printf("%-30s %10s  failed: %v\n", r.name, "-", r.err)
			continue
		}
		fmt.Printf("%-30s %9.2fs %13.2fx %13.2fx %13.2fs\n", label(r.name, n, concurrency), r.d.Seconds(),
			r.d.Seconds()/tri.d.Seconds(), r.d.Seconds()/floor.d.Seconds(), r.cpu.Seconds())
	}
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s failed", r.name)
		}
	}
	return nil
}

func label(name string, n, concurrency int) string {
	switch name {
	case "tricenter":
		return fmt.Sprintf("tricenter (concurrency %d)", concurrency)
	case "tricenter re-run":
		return "  re-run, nothing to send"
	case "ansible":
		return fmt.Sprintf("ansible-core (forks %d)", n)
	}
	return fmt.Sprintf("raw ssh floor (%d parallel)", n)
}

func timed(name string, f func() error) result {
	fmt.Printf("running %s...\n", name)
	t, c := time.Now(), cpuNow()
	err := f()
	d, cpu := time.Since(t), cpuNow()-c
	if err != nil {
		fmt.Printf("  %s failed after %s: %v\n", name, d.Round(time.Millisecond), err)
	} else {
		fmt.Printf("  %s: %s\n", name, d.Round(time.Millisecond))
	}
	return result{name, d, cpu, err}
}

func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sshArgs(l *sshtest.Lab) []string {
	return []string{"-i", l.ClientKey, "-o", "UserKnownHostsFile=" + l.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
}

// rawFloor: 50 OpenSSH clients in parallel, each streaming the file into
// cat > /dev/null.
func rawFloor(l *sshtest.Lab, artifact string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(l.Hosts))
	for i, h := range l.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(artifact)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			cmd := exec.Command("ssh", append(sshArgs(l), "root@"+h.Addr.String(), "cat > /dev/null")...)
			cmd.Stdin = f
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%s: %w: %s", h.Name, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// timeline collects per-host step durations of a tricenter run.
type timeline struct {
	mu    sync.Mutex
	steps map[string][]time.Duration
}

func (t *timeline) add(step string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.steps == nil {
		t.steps = map[string][]time.Duration{}
	}
	t.steps[step] = append(t.steps[step], d)
}

func (t *timeline) print(title string) {
	fmt.Printf("  %s, per host:", title)
	for _, step := range []string{"connect", "upload", "commands"} {
		d := t.steps[step]
		if len(d) == 0 {
			continue
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Printf("  %s median %.2fs max %.2fs;", step, d[len(d)/2].Seconds(), d[len(d)-1].Seconds())
	}
	fmt.Println()
}

func tricenter(l *sshtest.Lab, artifact string, cmds []string, concurrency int, tl *timeline) error {
	m := &phase.Manager{Cluster: l.Cluster(sshtest.ClusterOptions{}), Concurrency: concurrency}
	defer m.Close()
	return m.Run(context.Background(), &phase.HostPhase{
		Name: "Push the artifact and run commands",
		Apply: func(ctx context.Context, h *phase.Host) error {
			t := time.Now()
			if _, err := h.Client(ctx); err != nil {
				return err
			}
			tl.add("connect", time.Since(t))
			t = time.Now()
			if _, err := h.Upload(ctx, artifact, "/srv/bench/artifact.bin", 0o644); err != nil {
				return err
			}
			tl.add("upload", time.Since(t))
			t = time.Now()
			for i, c := range cmds {
				out, err := h.Exec(ctx, c)
				if err != nil {
					return err
				}
				if strings.TrimSpace(out) != fmt.Sprintf("step-%d", i+1) {
					return fmt.Errorf("%s: unexpected output %q", h.Name, out)
				}
			}
			tl.add("commands", time.Since(t))
			return nil
		},
	})
}

// clean removes what tricenter wrote, so Ansible starts from the same state.
func clean(l *sshtest.Lab) error {
	for _, h := range l.Hosts {
		if err := os.RemoveAll(h.Path("/srv/bench")); err != nil {
			return err
		}
	}
	return nil
}

func ansible(l *sshtest.Lab, work, artifact string, cmds []string) error {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return fmt.Errorf("ansible-playbook is not installed: run make deps (Debian ansible-core)")
	}
	var inv bytes.Buffer
	inv.WriteString("[lab]\n")
	for _, h := range l.Hosts {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", h.Name, h.Addr)
	}
	fmt.Fprintf(&inv, "\n[lab:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_python_interpreter=/usr/bin/python3\n", l.ClientKey)
	var pb bytes.Buffer
	fmt.Fprintf(&pb, "- hosts: lab\n  gather_facts: false\n  tasks:\n")
	fmt.Fprintf(&pb, "    - name: push the artifact\n      copy:\n        src: %s\n        dest: /srv/bench/artifact.bin\n        mode: '0644'\n", artifact)
	for i, c := range cmds {
		fmt.Fprintf(&pb, "    - name: step %d\n      command: sh -c %q\n", i+1, c)
	}
	cfg := fmt.Sprintf(`[defaults]
forks = %d
host_key_checking = True
remote_tmp = /var/tmp/.ansible-tmp
local_tmp = %s/ansible-local
stdout_callback = minimal
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=10s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes
control_path_dir = %s/cp
`, len(l.Hosts), work, l.KnownHosts, work)
	files := map[string][]byte{"hosts.ini": inv.Bytes(), "site.yml": pb.Bytes(), "ansible.cfg": []byte(cfg)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			return err
		}
	}
	// /srv/bench must exist for copy's dest.
	for _, h := range l.Hosts {
		if err := os.MkdirAll(h.Path("/srv/bench"), 0o755); err != nil {
			return err
		}
	}
	cmd := exec.Command("ansible-playbook", "-i", filepath.Join(work, "hosts.ini"), filepath.Join(work, "site.yml"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(work, "ansible.cfg"), "ANSIBLE_NOCOLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := string(out)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return fmt.Errorf("ansible-playbook: %w\n%s", err, tail)
	}
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// freshRoots gives every lab host a root home of its own, as on a freshly
// installed Debian host (/usr/share/base-files' .bashrc and .profile),
// instead of this machine's /root: bash sources ~/.bashrc for every
// command sshd runs, so whatever a developer's rc does would be paid on
// every session of every host.
func freshRoots(l *sshtest.Lab) error {
	script := "mount -t tmpfs -o size=16m,mode=0700 tricenter-lab /root && " +
		"cp /usr/share/base-files/dot.bashrc /root/.bashrc && cp /usr/share/base-files/dot.profile /root/.profile"
	for _, h := range l.Hosts {
		out, err := exec.Command("nsenter", "-t", fmt.Sprint(h.Pid()), "-m", "sh", "-c", script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("giving %s its own /root: %w: %s", h.Name, err, out)
		}
	}
	return nil
}
