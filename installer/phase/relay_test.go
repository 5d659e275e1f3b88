package phase_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The lab hosts share this machine's /var/lib: each keeps its cache on its
// private /srv.
const relayCache = "/srv/tricenter/cache/sha256"

type relayArtifact struct {
	local, path, sum string
	data             []byte
}

// relayArtifacts writes stand-in artifacts of the given sizes.
func relayArtifacts(t *testing.T, sizes ...int) []relayArtifact {
	t.Helper()
	dir := t.TempDir()
	var out []relayArtifact
	for i, n := range sizes {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(j*7 + i*131 + j>>9)
		}
		copy(data, fmt.Sprintf("artifact %d", i))
		local := filepath.Join(dir, fmt.Sprintf("bin%d", i))
		if err := os.WriteFile(local, data, 0o755); err != nil {
			t.Fatal(err)
		}
		out = append(out, relayArtifact{local: local, path: fmt.Sprintf("/srv/opt/bin/tool%d", i), sum: fsutil.SHA256Hex(data), data: data})
	}
	return out
}

func relayFiles(arts []relayArtifact) []phase.File {
	var fs []phase.File
	for _, a := range arts {
		fs = append(fs, phase.File{Path: a.path, Local: a.local, Mode: 0o755, SHA256: a.sum})
	}
	return fs
}

func setSize(arts []relayArtifact) int64 {
	var n int64
	for _, a := range arts {
		n += int64(len(a.data))
	}
	return n
}

// lockedBuffer collects log lines from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func debugLogger(b *lockedBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// cmdlineScan reads every process's command line until stopped: the
// token must never be on one. It also notes whether it saw a relay
// server and a receiver, so a scan that missed the transfer fails.
type cmdlineScan struct {
	stop             chan struct{}
	done             chan struct{}
	scans            atomic.Int64
	server, receiver atomic.Bool
	mu               sync.Mutex
	leaks            []string
}

func scanCmdlines(tok string) *cmdlineScan {
	s := &cmdlineScan{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			ents, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range ents {
				b, err := os.ReadFile(p)
				if err != nil {
					continue
				}
				if bytes.Contains(b, []byte(tok)) {
					s.mu.Lock()
					s.leaks = append(s.leaks, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
					s.mu.Unlock()
				}
				if bytes.Contains(b, []byte("tricenter-relay-send")) {
					s.server.Store(true)
				}
				if bytes.Contains(b, []byte("tricenter-relay-fetch")) {
					s.receiver.Store(true)
				}
			}
			s.scans.Add(1)
		}
	}()
	return s
}

func (s *cmdlineScan) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.leaks) > 0 {
		t.Errorf("the relay token was on process command lines: %q", s.leaks)
	}
	if !s.server.Load() || !s.receiver.Load() {
		t.Errorf("the command line scan (%d passes) never saw a relay server (%v) and a receiver (%v): it proves nothing",
			s.scans.Load(), s.server.Load(), s.receiver.Load())
	}
	t.Logf("%d scans of every process's command line during the transfers", s.scans.Load())
}

// installEach runs InstallFiles on the hosts at once (one phase).
func installEach(ctx context.Context, m *phase.Manager, sel inventory.Selector, record string, files []phase.File) error {
	return m.Run(ctx, &phase.HostPhase{Name: "Install the tools", Select: sel, Apply: func(ctx context.Context, h *phase.Host) error {
		_, err := h.InstallFiles(ctx, record, files)
		return err
	}})
}

func checkInstalled(t *testing.T, l *sshtest.Lab, arts []relayArtifact) {
	t.Helper()
	for _, h := range l.Hosts {
		for _, a := range arts {
			sum, err := fsutil.FileSHA256(h.Path(a.path))
			if err != nil || sum != a.sum {
				t.Errorf("%s: %s: %v, sha256 %.12s, want %.12s", h.Name, a.path, err, sum, a.sum)
				continue
			}
			if st, _ := os.Stat(h.Path(a.path)); st.Mode().Perm() != 0o755 {
				t.Errorf("%s: %s has mode %v, want 0755", h.Name, a.path, st.Mode().Perm())
			}
		}
	}
}

func countChanges(changes map[string][]string, prefix string) int {
	n := 0
	for _, cs := range changes {
		for _, c := range cs {
			if strings.HasPrefix(c, prefix) {
				n++
			}
		}
	}
	return n
}

// TestRelayOneCenterThroughJump installs stand-in artifacts on three
// servers of one center behind one jump host, as a non-root login, all
// at once: the bytes the jump host sent to the center (counted on its
// link, SSH framing included) stay within 1.1× the set, and so does the
// engine's own count; one server uploads each file, the others fetch it
// from that server; every server has every file with its digest; the
// token is on no process's command line during the transfers, nor in the
// logs, the progress lines, sshd's logs or any file name. Then a tampered
// cache file is detected and fetched again inside the center (not through
// the jump host), the servers stop when the relay closes, and a new run
// installs from the caches without sending anything.
func TestRelayOneCenterThroughJump(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	testenv.RequireBinary(t, "bash", "systemd-socket-activate")
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	for _, h := range l.Hosts {
		h.RequireUnreachable(t)
	}
	ctx := ctxT(t, 3*time.Minute)
	c := l.OneCenter(sshtest.ClusterOptions{User: "deploy", PinHostKeys: true})
	arts := relayArtifacts(t, 4<<20, 3<<20, 2<<20+333, 10<<10)
	files := relayFiles(arts)
	const record = "/srv/opt/bin/.tools.sha256"

	var logs lockedBuffer
	rec := &recorder{}
	rel, err := phase.NewRelay(phase.RelayOptions{CacheDir: relayCache, Logger: debugLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	tok := phase.RelayToken(rel)
	rctx := phase.WithRelay(ctx, rel)
	m := &phase.Manager{Cluster: c, Logger: debugLogger(&logs), Progress: rec}
	defer m.Close()

	before, err := l.JumpSentBytes()
	if err != nil {
		t.Fatal(err)
	}
	scan := scanCmdlines(tok)
	start := time.Now()
	err = installEach(rctx, m, inventory.Selector{}, record, files)
	took := time.Since(start)
	scan.finish(t)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, logs.String())
	}
	after, _ := l.JumpSentBytes()
	set := setSize(arts)
	wire := after - before
	t.Logf("3 servers, %s set in %s: the jump host sent %s to the center (%.3f× the set)", progress.Bytes(set), took,
		progress.Bytes(wire), float64(wire)/float64(set))
	if float64(wire) > 1.1*float64(set) {
		t.Errorf("the jump host sent %d bytes for a %d-byte set (%.2f×), want ≤ 1.1×", wire, set, float64(wire)/float64(set))
	}
	jb := rel.JumpBytes()
	if len(jb) != 1 || jb[0].Jump != "dc1-jump" || jb[0].Set != set || jb[0].Bytes < set || float64(jb[0].Bytes) > 1.1*float64(set) {
		t.Errorf("engine's count = %+v, want dc1-jump with set %d and bytes within 1.1× of it", jb, set)
	} else {
		t.Log(jb[0])
	}
	checkInstalled(t, l, arts)
	changes := m.Changes()
	seedOf := map[string]string{}
	for _, a := range arts[:3] {
		up, fetched := 0, 0
		for host, cs := range changes {
			for _, ch := range cs {
				if strings.HasPrefix(ch, "upload the content of "+a.path+" into the cache") {
					up++
					seedOf[a.path] = host
				}
				if strings.HasPrefix(ch, "fetch the content of "+a.path+" from ") {
					fetched++
				}
			}
		}
		if up != 1 || fetched != 2 {
			t.Errorf("%s: %d uploads into a cache and %d fetches, want 1 and 2; changes:\n%q", a.path, up, fetched, changes)
		}
	}
	if n := countChanges(changes, "upload "+arts[3].path+" ("); n != 3 {
		t.Errorf("the small file was uploaded to %d servers, want each of the 3 directly", n)
	}
	for _, h := range l.Hosts {
		st, err := os.Stat(h.Path(relayCache))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: cache directory: %v, want mode 0700", h.Name, err)
		}
		for _, a := range arts[:3] {
			if st, err := os.Stat(h.Path(relayCache + "/" + a.sum)); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: cache file of %s: %v, want mode 0600", h.Name, a.path, err)
			}
		}
	}

	// A tampered cache file (same size) on a server that fetched it: the
	// next install of that file detects it and fetches it again from the
	// seed, inside the center.
	var victim *sshtest.Host
	for _, h := range l.Hosts {
		if h.Name != seedOf[arts[0].path] {
			victim = h
			break
		}
	}
	cached := victim.Path(relayCache + "/" + arts[0].sum)
	bad := bytes.Clone(arts[0].data)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(cached, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(victim.Path(arts[0].path)); err != nil {
		t.Fatal(err)
	}
	before, _ = l.JumpSentBytes()
	scan = scanCmdlines(tok)
	err = installEach(rctx, m, inventory.Selector{Servers: []string{victim.Name}}, record, files)
	scan.finish(t)
	if err != nil {
		t.Fatalf("install after tampering: %v", err)
	}
	after, _ = l.JumpSentBytes()
	checkInstalled(t, l, arts)
	if got, _ := os.ReadFile(cached); !bytes.Equal(got, arts[0].data) {
		t.Errorf("%s: the tampered cache file was not replaced", victim.Name)
	}
	if !strings.Contains(logs.String(), "does not match its digest: fetching it again") {
		t.Errorf("no log line says the tampered cache file was detected:\n%s", logs.String())
	}
	if n := countChanges(map[string][]string{victim.Name: m.Changes()[victim.Name]}, "fetch the content of "+arts[0].path); n != 2 {
		t.Errorf("%s fetched %s %d times in all, want twice (once more after the tampering)", victim.Name, arts[0].path, n)
	}
	if wire := after - before; wire > int64(len(arts[0].data))/4 {
		t.Errorf("the re-fetch sent %d bytes through the jump host: it was uploaded, not fetched inside the center", wire)
	}

	if err := rel.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="Bytes through jump host" jump=dc1-jump`) {
		t.Errorf("no log line gives the bytes through the jump host:\n%s", logs.String())
	}
	waitNoRelayServers(t)

	for _, h := range l.Hosts {
		if s := h.Log(); strings.Contains(s, tok) {
			t.Errorf("%s: the token is in sshd's log", h.Name)
		}
		err := filepath.WalkDir(h.Path("/srv"), func(p string, _ fs.DirEntry, err error) error {
			if strings.Contains(p, tok) || strings.Contains(p, tok[:16]) {
				t.Errorf("%s: a file name holds the token: %s", h.Name, p)
			}
			return err
		})
		if err != nil {
			t.Error(err)
		}
		if left, _ := filepath.Glob(h.Path(relayCache + "/.*")); len(left) > 0 {
			t.Errorf("%s: temporary files or run directories left in the cache: %v", h.Name, left)
		}
	}
	for what, s := range map[string]string{"logs": logs.String(), "progress": rec.all()} {
		if strings.Contains(s, tok) {
			t.Errorf("the token is in the %s", what)
		}
	}

	// A new run: the installed files are gone, the caches are not. Every
	// server installs from its own cache and nothing crosses the jump host.
	for _, h := range l.Hosts {
		for _, a := range arts {
			os.Remove(h.Path(a.path))
		}
	}
	rel2, err := phase.NewRelay(phase.RelayOptions{CacheDir: relayCache, Logger: debugLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	m2 := &phase.Manager{Cluster: c}
	defer m2.Close()
	if err := installEach(phase.WithRelay(ctx, rel2), m2, inventory.Selector{}, record, files); err != nil {
		t.Fatal(err)
	}
	rel2.Close()
	checkInstalled(t, l, arts)
	ch2 := m2.Changes()
	if n := countChanges(ch2, "install "); n != 9 {
		t.Errorf("%d installs from the caches, want 3 files × 3 servers:\n%q", n, ch2)
	}
	if n := countChanges(ch2, "fetch ") + countChanges(ch2, "upload the content"); n != 0 {
		t.Errorf("the second run uploaded or fetched %d times, want none:\n%q", n, ch2)
	}
	if jb := rel2.JumpBytes(); len(jb) != 1 || jb[0].Bytes != 3*int64(len(arts[3].data)) {
		t.Errorf("second run's count = %+v, want only the small file, 3 times", jb)
	}
}

// waitNoRelayServers polls until no relay server runs any more.
func waitNoRelayServers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var left []string
		ents, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range ents {
			if b, err := os.ReadFile(p); err == nil && (bytes.Contains(b, []byte("tricenter-relay-serve")) ||
				bytes.Contains(b, []byte("tricenter-relay-send"))) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay servers still run after Close: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// gatedProgress holds one host's first upload until released, and
// forwards everything else to a recorder.
type gatedProgress struct {
	*recorder
	host    string
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedProgress) UploadStart(host, file string, size int64) {
	if host == g.host {
		g.once.Do(func() {
			close(g.started)
			<-g.release
		})
	}
}

// TestRelaySeedFailsWaitersUploadDirectly: the seed of a file runs out of
// space while the other servers of its center wait for it: they upload
// the file directly instead, and the log says so.
func TestRelaySeedFailsWaitersUploadDirectly(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	testenv.RequireBinary(t, "bash", "systemd-socket-activate")
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true, TmpfsSize: "24m"})
	ctx := ctxT(t, 2*time.Minute)
	c := l.OneCenter(sshtest.ClusterOptions{PinHostKeys: true})
	arts := relayArtifacts(t, 6<<20)
	files := relayFiles(arts)
	seed := l.Hosts[0]
	// Leave the seed about 2 MiB of its 24 MiB.
	if err := os.WriteFile(seed.Path("/srv/filler"), make([]byte, 22<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	rel, err := phase.NewRelay(phase.RelayOptions{CacheDir: relayCache, Logger: debugLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	gp := &gatedProgress{recorder: &recorder{}, host: seed.Name, started: make(chan struct{}), release: make(chan struct{})}
	m := &phase.Manager{Cluster: c, Logger: debugLogger(&logs), Progress: gp}
	defer m.Close()
	rctx := phase.WithRelay(ctx, rel)
	seedErr := make(chan error, 1)
	go func() {
		seedErr <- installEach(rctx, m, inventory.Selector{Servers: []string{seed.Name}}, "", files)
	}()
	select {
	case <-gp.started:
	case err := <-seedErr:
		t.Fatalf("the seed finished before uploading: %v", err)
	}
	others := []string{l.Hosts[1].Name, l.Hosts[2].Name}
	othersErr := make(chan error, 1)
	go func() {
		othersErr <- installEach(rctx, m, inventory.Selector{Servers: others}, "", files)
	}()
	// Release the seed's upload once both others wait for it (they log
	// just before they claim the file).
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(logs.String(), `msg="Getting the file in the center"`) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the other servers never asked for the file:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // from the log line to the wait: no I/O in between
	close(gp.release)
	if err := <-seedErr; err == nil || !strings.Contains(err.Error(), seed.Name) {
		t.Errorf("the seed's install: %v, want its failure (no space left)", err)
	}
	if err := <-othersErr; err != nil {
		t.Fatalf("the waiters' install: %v\n%s", err, logs.String())
	}
	for _, h := range l.Hosts[1:] {
		if sum, err := fsutil.FileSHA256(h.Path(arts[0].path)); err != nil || sum != arts[0].sum {
			t.Errorf("%s: %v (sha256 %.12s)", h.Name, err, sum)
		}
		want := fmt.Sprintf(`msg="The seed did not receive the file: uploading it directly" host=%s`, h.Name)
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line says %s uploads directly after the seed failed:\n%s", h.Name, logs.String())
		}
	}
}

// TestRelayFetchFailsFallsBack: when no seed can serve (its
// systemd-socket-activate fails), each server uploads the file directly
// after trying a second seed, says so in the log, and the run succeeds.
func TestRelayFetchFailsFallsBack(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	l.FakeCommands(t, map[string]string{"systemd-socket-activate": "#!/bin/sh\necho 'Failed to listen: broken for the test' >&2\nexit 1\n"})
	ctx := ctxT(t, 2*time.Minute)
	c := l.OneCenter(sshtest.ClusterOptions{PinHostKeys: true})
	arts := relayArtifacts(t, 2<<20)
	var logs lockedBuffer
	rel, err := phase.NewRelay(phase.RelayOptions{CacheDir: relayCache, Logger: debugLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	m := &phase.Manager{Cluster: c, Logger: debugLogger(&logs)}
	defer m.Close()
	if err := installEach(phase.WithRelay(ctx, rel), m, inventory.Selector{}, "", relayFiles(arts)); err != nil {
		t.Fatalf("install: %v\n%s", err, logs.String())
	}
	rel.Close()
	checkInstalled(t, l, arts)
	if !strings.Contains(logs.String(), `msg="Fetching from the seed failed: uploading the file directly"`) {
		t.Errorf("no log line says a server uploads directly after failing to fetch:\n%s", logs.String())
	}
	if jb := rel.JumpBytes(); len(jb) != 1 || jb[0].Bytes < 2*jb[0].Set {
		t.Errorf("count = %+v: the fallback uploads are not counted", jb)
	}
}

// TestStartRelay: the engine's one line gives a context carrying a relay
// and a stop that reports the counts; bad options leave the run without a
// relay (direct uploads) instead of failing it.
func TestStartRelay(t *testing.T) {
	ctx, stop := phase.StartRelay(context.Background(), phase.RelayOptions{})
	if phase.RelayFrom(ctx) == nil {
		t.Fatal("StartRelay gave a context without a relay")
	}
	if got := stop(); len(got) != 0 {
		t.Errorf("counts of a run that sent nothing: %+v", got)
	}
	var logs lockedBuffer
	ctx, stop = phase.StartRelay(context.Background(), phase.RelayOptions{PortMin: 70000, Logger: debugLogger(&logs)})
	if phase.RelayFrom(ctx) != nil || stop() != nil {
		t.Error("bad options still gave a relay")
	}
	if !strings.Contains(logs.String(), "no relay") {
		t.Errorf("bad options were not logged: %q", logs.String())
	}
}
