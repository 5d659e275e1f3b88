package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// step is one measured operation, run on every host at once; the next step
// starts when every host finished this one, so each step's wall time is
// its share of the whole.
type step struct {
	name string
	fn   func(ctx context.Context, c *ssh.Client, i int) error
}

// steps times the upload's building blocks one at a time across all hosts
// (bench/installer.sh -steps): session opens, the remote stat script, the
// SFTP stream, fsync, the remote sha256, rename, the commands, and the
// exec-stream alternatives, each with its wall time and per-host spread.
func steps(n, sizeMiB, commands int, sharedRoot bool, ab int) error {
	ctx := context.Background()
	l, err := sshtest.Start(ctx, sshtest.Options{Block: block, Hosts: n, TmpfsSize: fmt.Sprintf("%dm", sizeMiB*4+64)})
	if err != nil {
		return err
	}
	defer l.Close()
	if !sharedRoot {
		if err := freshRoots(l); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "tricenter-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	artifact := work + "/artifact.bin"
	if err := writeRandom(artifact, int64(sizeMiB)<<20); err != nil {
		return err
	}
	sum, err := fsutil.FileSHA256(artifact)
	if err != nil {
		return err
	}
	size := int64(sizeMiB) << 20
	pool, err := ssh.NewPool(ssh.Options{KnownHosts: []string{l.KnownHosts}})
	if err != nil {
		return err
	}
	defer pool.Close()
	clients := make([]*ssh.Client, n)
	deploy := make([]*ssh.Client, n)
	puts := make([]*ssh.PutSession, n)
	const dst = "/srv/bench/artifact.bin"
	tmp := "/srv/bench/.artifact.bin.tmp"
	run := func(cmd string) func(ctx context.Context, c *ssh.Client, i int) error {
		return func(ctx context.Context, c *ssh.Client, _ int) error { return c.Run(ctx, cmd, nil, nil, nil) }
	}
	open := func(name string) (*os.File, error) { return os.Open(name) }
	all := []step{
		{"connect", func(ctx context.Context, _ *ssh.Client, i int) error {
			h := l.Hosts[i]
			c, err := pool.Client(ctx, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), User: "root", KeyFile: l.ClientKey})
			clients[i] = c
			return err
		}},
		{"session open + true", run("true")},
		{"session as deploy (dash, no rc) + true", func(ctx context.Context, _ *ssh.Client, i int) error {
			h := l.Hosts[i]
			c, err := pool.Client(ctx, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), User: "deploy", KeyFile: l.ClientKey})
			if err != nil {
				return err
			}
			deploy[i] = c
			return c.Run(ctx, "true", nil, nil, nil)
		}},
		{"5 sessions as deploy `true`, sequential", func(ctx context.Context, _ *ssh.Client, i int) error {
			for range 5 {
				if err := deploy[i].Run(ctx, "true", nil, nil, nil); err != nil {
					return err
				}
			}
			return nil
		}},
		{"5 sessions `true`, sequential", func(ctx context.Context, c *ssh.Client, _ int) error {
			for range 5 {
				if err := c.Run(ctx, "true", nil, nil, nil); err != nil {
					return err
				}
			}
			return nil
		}},
		{"Client.Stat, absent", func(ctx context.Context, c *ssh.Client, _ int) error {
			_, err := c.Stat(ctx, dst)
			return err
		}},
		{"sftp subsystem start", func(_ context.Context, c *ssh.Client, _ int) error {
			_, err := c.SFTP()
			return err
		}},
		{"sftp mkdir+open+chmod", func(_ context.Context, c *ssh.Client, _ int) error {
			s, _ := c.SFTP()
			if err := s.MkdirAll(path.Dir(dst)); err != nil {
				return err
			}
			f, err := s.Create(tmp)
			if err != nil {
				return err
			}
			if err := f.Chmod(0o600); err != nil {
				return err
			}
			return f.Close()
		}},
		{"sftp stream 128K x16", func(_ context.Context, c *ssh.Client, _ int) error {
			s, _ := c.SFTP()
			f, err := s.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC)
			if err != nil {
				return err
			}
			defer f.Close()
			src, err := open(artifact)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = f.ReadFromWithConcurrency(io.LimitReader(src, size), 0)
			return err
		}},
		{"sftp stream 32K x64 (own client)", sftpVariant(l, artifact, tmp, size, 32<<10, 64)},
		{"sftp stream 252K x8 (own client)", sftpVariant(l, artifact, tmp, size, 252<<10, 8)},
		{"sftp stream 128K x16 (own client)", sftpVariant(l, artifact, tmp, size, 128<<10, 16)},
		{"sftp fsync", func(_ context.Context, c *ssh.Client, _ int) error {
			s, _ := c.SFTP()
			f, err := s.OpenFile(tmp, os.O_WRONLY)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Sync()
		}},
		{"remote sha256sum", run("sha256sum " + tmp + " >/dev/null")},
		{"remote openssl sha256", run("openssl dgst -sha256 -r " + tmp + " >/dev/null")},
		{"old finalize script (sha256sum, chmod, mv, sync)", run(fmt.Sprintf(
			"set -e; s=$(sha256sum -- %[1]s); [ \"${s%%%% *}\" = %[2]s ]; chmod 644 %[1]s; mv -f %[1]s %[3]s; sync %[4]s",
			tmp, sum, dst, path.Dir(dst)))},
		{"Client.Stat, present (hashed: openssl)", func(ctx context.Context, c *ssh.Client, _ int) error {
			st, err := c.Stat(ctx, dst)
			if err == nil && st.SHA256 != sum {
				err = fmt.Errorf("sha256 %s, want %s", st.SHA256, sum)
			}
			return err
		}},
		{"sftp lstat", func(_ context.Context, c *ssh.Client, _ int) error {
			s, _ := c.SFTP()
			_, err := s.Lstat(dst)
			return err
		}},
		{fmt.Sprintf("%d commands, sequential sessions", commands), func(ctx context.Context, c *ssh.Client, _ int) error {
			for i := range commands {
				if err := c.Run(ctx, fmt.Sprintf("test -s %s && echo step-%d", dst, i+1), nil, io.Discard, nil); err != nil {
					return err
				}
			}
			return nil
		}},
		{"engine put: open, target absent", func(ctx context.Context, c *ssh.Client, i int) error {
			u, err := c.OpenPut(ctx, "/srv/bench/put.bin", ssh.PutOptions{SHA256: sum, Size: size})
			if err == nil {
				puts[i] = u
			}
			return err
		}},
		{"engine put: send (stream, fsync, sha256, rename)", func(ctx context.Context, _ *ssh.Client, i int) error {
			f, err := open(artifact)
			if err != nil {
				return err
			}
			defer f.Close()
			return puts[i].Send(ctx, f)
		}},
		{"engine put: open, identical target (hashed)", func(ctx context.Context, c *ssh.Client, _ int) error {
			u, err := c.OpenPut(ctx, "/srv/bench/put.bin", ssh.PutOptions{SHA256: sum, Size: size})
			if err != nil {
				return err
			}
			defer u.Close()
			if u.State().SHA256 != sum {
				return fmt.Errorf("state %+v", u.State())
			}
			return nil
		}},
		{"exec stream: cat > /dev/null", func(ctx context.Context, c *ssh.Client, _ int) error {
			f, err := open(artifact)
			if err != nil {
				return err
			}
			defer f.Close()
			return c.Run(ctx, "cat > /dev/null", f, nil, nil)
		}},
		{"exec stream: cat > tmp", func(ctx context.Context, c *ssh.Client, _ int) error {
			f, err := open(artifact)
			if err != nil {
				return err
			}
			defer f.Close()
			return c.Run(ctx, "cat > "+tmp, f, nil, nil)
		}},
		{"exec stream: tee tmp | openssl sha256", func(ctx context.Context, c *ssh.Client, _ int) error {
			f, err := open(artifact)
			if err != nil {
				return err
			}
			defer f.Close()
			return c.Run(ctx, "tee "+tmp+" | openssl dgst -sha256 -r >/dev/null", f, nil, nil)
		}},
		{"exec stream: tee tmp | sha256sum", func(ctx context.Context, c *ssh.Client, _ int) error {
			f, err := open(artifact)
			if err != nil {
				return err
			}
			defer f.Close()
			return c.Run(ctx, "tee "+tmp+" | sha256sum >/dev/null", f, nil, nil)
		}},
	}
	if ab > 0 {
		// The transfer alone, alternating, each into a fresh file.
		byName := map[string]step{}
		for _, st := range all {
			byName[st.name] = st
		}
		rm := func(p string) func(context.Context, *ssh.Client, int) error {
			return run("rm -f " + p)
		}
		ordered := all[:1]
		for range ab {
			ordered = append(ordered,
				step{"  (rm)", rm(tmp)}, byName["sftp mkdir+open+chmod"], byName["sftp stream 128K x16"],
				step{"  (rm)", rm(tmp)}, byName["exec stream: cat > tmp"],
				step{"  (rm)", rm("/srv/bench/put.bin")}, byName["engine put: open, target absent"],
				byName["engine put: send (stream, fsync, sha256, rename)"])
		}
		all = ordered
	}
	fmt.Printf("\nsteps: %d MiB to %d hosts, one step at a time on all hosts (%s, load average %s)\n\n",
		sizeMiB, n, "real sshd per host", loadavg())
	roots := map[int]bool{}
	for _, h := range l.Hosts {
		roots[h.Pid()] = true
	}
	fmt.Printf("%-46s %9s %9s %9s %9s %6s  %s\n", "step", "wall", "median", "p90", "max", "busy", "CPU seconds: client, lab processes by name (reaped children count for their parent)")
	for _, s := range all {
		durs := make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		t0, cpu0, procs0 := time.Now(), cpuStat(), procSnapshot()
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.Now()
				errs[i] = s.fn(ctx, clients[i], i)
				durs[i] = time.Since(t)
			}()
		}
		wg.Wait()
		wall := time.Since(t0)
		busy := cpuStat().sub(cpu0)
		use := procUse(procs0, procSnapshot(), roots)
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("%s on %s: %w", s.name, l.Hosts[i].Name, err)
			}
		}
		sort.Slice(durs, func(a, b int) bool { return durs[a] < durs[b] })
		ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1000) }
		fmt.Printf("%-46s %9s %9s %9s %9s %5.0f%%  %s\n", s.name, ms(wall), ms(durs[n/2]), ms(durs[n*9/10]), ms(durs[n-1]), busy, use)
	}
	fmt.Printf("\nload average after: %s\n", loadavg())
	return nil
}

// cpuTimes are the machine's busy and total jiffies from /proc/stat.
type cpuTimes struct{ busy, total uint64 }

func cpuStat() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var t cpuTimes
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t
}

// sub is the busy share of the machine between u and t, in percent.
func (t cpuTimes) sub(u cpuTimes) float64 {
	if t.total == u.total {
		return 0
	}
	return 100 * float64(t.busy-u.busy) / float64(t.total-u.total)
}

type proc struct {
	ppid int
	comm string
	cpu  uint64 // jiffies: own and reaped children's
}

func procSnapshot() map[int]proc {
	out := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+2:])
		if len(f) < 15 {
			continue
		}
		p := proc{comm: s[i+1 : j]}
		p.ppid, _ = strconv.Atoi(f[1])
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseUint(f[k], 10, 64)
			p.cpu += v
		}
		out[pid] = p
	}
	return out
}

// procUse sums the CPU used between two snapshots by this process and by
// the lab's processes (descendants of roots), by command name.
func procUse(a, b map[int]proc, roots map[int]bool) string {
	self := os.Getpid()
	inLab := func(pid int) bool {
		for range 64 {
			if roots[pid] {
				return true
			}
			p, ok := b[pid]
			if !ok || p.ppid <= 1 {
				return false
			}
			pid = p.ppid
		}
		return false
	}
	by := map[string]uint64{}
	for pid, p := range b {
		d := p.cpu
		if q, ok := a[pid]; ok && q.comm == p.comm && d >= q.cpu {
			d -= q.cpu
		}
		switch {
		case pid == self:
			by["client"] += d
		case inLab(pid):
			by[p.comm] += d
		}
	}
	names := make([]string, 0, len(by))
	for n := range by {
		if by[n] > 0 {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool { return by[names[i]] > by[names[j]] })
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", n, float64(by[n])/100))
	}
	return strings.Join(parts, ", ")
}

// sftpVariant streams the artifact over a connection and SFTP client of
// its own, with the given write size and requests in flight.
func sftpVariant(l *sshtest.Lab, artifact, dst string, size int64, packet, inflight int) func(context.Context, *ssh.Client, int) error {
	return func(_ context.Context, _ *ssh.Client, i int) error {
		key, err := os.ReadFile(l.ClientKey)
		if err != nil {
			return err
		}
		signer, err := xssh.ParsePrivateKey(key)
		if err != nil {
			return err
		}
		hk, err := knownhosts.New(l.KnownHosts)
		if err != nil {
			return err
		}
		c, err := xssh.Dial("tcp", l.Hosts[i].Addr.String()+":22", &xssh.ClientConfig{User: "root",
			Auth: []xssh.AuthMethod{xssh.PublicKeys(signer)}, HostKeyCallback: hk})
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true), sftp.MaxPacketUnchecked(packet),
			sftp.MaxConcurrentRequestsPerFile(inflight))
		if err != nil {
			return err
		}
		defer s.Close()
		f, err := s.OpenFile(dst, os.O_WRONLY|os.O_TRUNC|os.O_CREATE)
		if err != nil {
			return err
		}
		defer f.Close()
		src, err := os.Open(artifact)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = f.ReadFromWithConcurrency(io.LimitReader(src, size), 0)
		return err
	}
}
