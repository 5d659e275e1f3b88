package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/relay"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// localShell runs the relay's scripts on this machine with sh, as an SSH
// session would on a server: the same scripts, bash's /dev/tcp and
// systemd-socket-activate, on loopback. It is not a fake of the remote
// side; the lab test in installer/phase runs them through real sshd hosts.
type localShell struct{}

func (localShell) AsRoot(cmd string) string { return cmd }

func (localShell) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := exec.Command("sh", "-c", cmd)
	c.Stdout, c.Stderr = stdout, stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.WaitDelay = 2 * time.Second
	// Stdin is copied by a goroutine Wait does not wait for, as an SSH
	// session does: a stdin that stays open does not hold Run.
	var in io.WriteCloser
	if stdin != nil {
		var err error
		if in, err = c.StdinPipe(); err != nil {
			return err
		}
	}
	if err := c.Start(); err != nil {
		return err
	}
	if in != nil {
		go func() {
			_, _ = io.Copy(in, stdin)
			in.Close()
		}()
	}
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL) })
	defer stop()
	err := c.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func need(t *testing.T) {
	t.Helper()
	testenv.RequireBinary(t, "bash", "systemd-socket-activate", "sha256sum", "timeout", "od")
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// freePort picks a port in 40000–59999 nobody listens on now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 50 {
		n, _ := rand.Int(rand.Reader, big.NewInt(20000))
		p := uint16(40000 + n.Int64())
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// seedFile writes random content into a file and adds it to cache dir
// through Add, as an etcd snapshot would be.
func seedFile(t *testing.T, ctx context.Context, dir string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum, n, err := relay.Add(ctx, localShell{}, dir, src)
	if err != nil {
		t.Fatal(err)
	}
	if sum != fsutil.SHA256Hex(data) || n != int64(size) {
		t.Fatalf("Add = %s %d, want %s %d", sum, n, fsutil.SHA256Hex(data), size)
	}
	return sum, data
}

// tokenInCmdlines reports the processes whose command line holds tok.
func tokenInCmdlines(tok string) []string {
	var hits []string
	ents, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range ents {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(tok)) {
			hits = append(hits, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return hits
}

// TestServeFetchInstall moves a file from a seed's cache to a receiver's
// with the real scripts, then installs it from the receiver's cache: the
// receiver's copy is byte for byte the seed's, the cache directory is
// 0700, the token is on no process's command line while the server runs
// and in none of its output, and the server stops on Close.
func TestServeFetchInstall(t *testing.T) {
	need(t)
	ctx := ctxT(t, time.Minute)
	seedDir := filepath.Join(t.TempDir(), "seed", "cache")
	recvDir := filepath.Join(t.TempDir(), "recv", "cache")
	sum, data := seedFile(t, ctx, seedDir, 3<<20+17)
	tok, err := relay.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	port := freePort(t)
	srv, err := relay.Serve(ctx, localShell{}, relay.ServeOptions{Name: "seed", CacheDir: seedDir,
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Token: tok, Deadline: time.Minute,
		Logger: newLogger(&mu, &logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if hits := tokenInCmdlines(tok); len(hits) > 0 {
		t.Errorf("the token is on command lines: %q", hits)
	}
	if err := srv.Offer(ctx, sum); err != nil {
		t.Fatal(err)
	}
	// Scan the command lines while the transfer runs.
	var scans atomic.Int64
	var leaked atomic.Value
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if h := tokenInCmdlines(tok); len(h) > 0 {
				leaked.Store(h)
			}
			scans.Add(1)
		}
	}()
	start := time.Now()
	err = relay.Fetch(ctx, localShell{}, relay.FetchOptions{Name: "recv", Seed: "seed", CacheDir: recvDir,
		From: srv.Listen(), Token: tok, SHA256: sum, Size: int64(len(data))})
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fetched %d bytes in %s (%d command line scans during the transfer)", len(data), time.Since(start), scans.Load())
	if h := leaked.Load(); h != nil {
		t.Errorf("the token was on a command line during the transfer: %q", h)
	}
	got, err := os.ReadFile(filepath.Join(recvDir, sum))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("receiver's cache file: %v (%d bytes, want %d)", err, len(got), len(data))
	}
	for _, d := range []string{seedDir, recvDir} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("cache directory %s: %v, mode %v, want 0700", d, err, st.Mode().Perm())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(recvDir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left in the receiver's cache: %v", left)
	}

	target := filepath.Join(t.TempDir(), "opt", "bin", "kubelet")
	if err := relay.Install(ctx, localShell{}, relay.InstallOptions{CacheDir: recvDir, SHA256: sum, Path: target, Mode: 0o751}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("installed file: %v", err)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o751 {
		t.Errorf("installed mode %v, want 0751", st.Mode().Perm())
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Done():
	default:
		t.Fatal("the server is not done after Close")
	}
	if c, err := net.DialTimeout("tcp", srv.Listen().String(), time.Second); err == nil {
		c.Close()
		t.Error("the server still listens after Close")
	}
	if left, _ := filepath.Glob(filepath.Join(seedDir, ".serve.*")); len(left) > 0 {
		t.Errorf("the server left its run directory: %v", left)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), tok) {
		t.Error("the token is in the server's log")
	}
	if !strings.Contains(logs.String(), "Listening on 127.0.0.1:") {
		t.Errorf("the server's log lacks the listener's line:\n%s", logs.String())
	}
}

// TestFetchRefusals: a wrong token, a digest not offered in this run, a
// port nobody listens on and a seed whose cache file was tampered with all
// fail the fetch, and nothing lands in the receiver's cache.
func TestFetchRefusals(t *testing.T) {
	need(t)
	ctx := ctxT(t, time.Minute)
	seedDir := filepath.Join(t.TempDir(), "cache")
	recvDir := filepath.Join(t.TempDir(), "cache")
	offered, data := seedFile(t, ctx, seedDir, 64<<10)
	other, _ := seedFile(t, ctx, seedDir, 1000)
	tok, _ := relay.NewToken()
	srv, err := relay.Serve(ctx, localShell{}, relay.ServeOptions{Name: "seed", CacheDir: seedDir,
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t)), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Offer(ctx, offered); err != nil {
		t.Fatal(err)
	}
	fetch := func(tok, sum string, size int64) error {
		return relay.Fetch(ctx, localShell{}, relay.FetchOptions{Name: "recv", Seed: "seed", CacheDir: recvDir,
			From: srv.Listen(), Token: tok, SHA256: sum, Size: size})
	}
	wrong, _ := relay.NewToken()
	for _, c := range []struct {
		name, tok, sum string
		size           int64
		want           string
	}{
		{"wrong token", wrong, offered, int64(len(data)), "answered refused"},
		{"not offered", tok, other, 1000, "answered unknown"},
	} {
		err := fetch(c.tok, c.sum, c.size)
		if !errors.Is(err, relay.ErrFetch) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrFetch %q", c.name, err, c.want)
		}
		if strings.Contains(fmt.Sprint(err), tok) || strings.Contains(fmt.Sprint(err), wrong) {
			t.Errorf("%s: the error holds a token", c.name)
		}
	}
	// Nobody listens: the probe fails at once, naming the port.
	err = relay.Fetch(ctx, localShell{}, relay.FetchOptions{Name: "recv", Seed: "seed", CacheDir: recvDir,
		From: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t)), Token: tok, SHA256: offered, Size: int64(len(data))})
	if !errors.Is(err, relay.ErrFetch) || !strings.Contains(err.Error(), "cannot connect to 127.0.0.1 port") {
		t.Errorf("fetch from a closed port: %v, want ErrFetch naming the port", err)
	}
	// Tamper with the seed's copy (same size): the receiver refuses it.
	bad := bytes.Clone(data)
	bad[100] ^= 0xff
	if err := os.WriteFile(filepath.Join(seedDir, offered), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	err = fetch(tok, offered, int64(len(data)))
	if !errors.Is(err, relay.ErrChecksum) || !errors.Is(err, relay.ErrFetch) {
		t.Errorf("tampered seed copy: %v, want ErrFetch and ErrChecksum", err)
	}
	if ents, _ := os.ReadDir(recvDir); len(ents) > 0 {
		t.Errorf("the receiver's cache holds %d entries after refusals, want none", len(ents))
	}
}

// TestInstallChecksTheCache: a cache file that does not hash to its name
// is detected, removed, and nothing is installed; a missing one is
// ErrNotCached; Query sees sizes only.
func TestInstallChecksTheCache(t *testing.T) {
	need(t)
	ctx := ctxT(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "cache")
	sum, data := seedFile(t, ctx, dir, 5000)
	st, err := relay.Query(ctx, localShell{}, dir, map[string]int64{sum: 5000, strings.Repeat("a", 64): 10})
	if err != nil {
		t.Fatal(err)
	}
	if !st.DirOK && os.Geteuid() == 0 || !st.Has[sum] || len(st.Has) != 1 {
		t.Errorf("Query = %+v, want the directory right and only %s", st, sum[:12])
	}
	bad := bytes.Clone(data)
	bad[0] ^= 1
	if err := os.WriteFile(filepath.Join(dir, sum), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "etcd")
	err = relay.Install(ctx, localShell{}, relay.InstallOptions{CacheDir: dir, SHA256: sum, Path: target})
	if !errors.Is(err, relay.ErrChecksum) {
		t.Fatalf("install from a tampered cache: %v, want ErrChecksum", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Error("a tampered cache file was installed")
	}
	if _, err := os.Stat(filepath.Join(dir, sum)); !os.IsNotExist(err) {
		t.Error("the tampered cache file was kept")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(target), ".*")); len(left) > 0 {
		t.Errorf("temporary files left beside the target: %v", left)
	}
	err = relay.Install(ctx, localShell{}, relay.InstallOptions{CacheDir: dir, SHA256: sum, Path: target})
	if !errors.Is(err, relay.ErrNotCached) {
		t.Fatalf("install of a missing cache file: %v, want ErrNotCached", err)
	}
}

// TestServerStops: at its deadline the server stops by itself (and frees
// the port), and a second server on a taken port says ErrPortInUse.
func TestServerStops(t *testing.T) {
	need(t)
	ctx := ctxT(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "cache")
	tok, _ := relay.NewToken()
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	srv, err := relay.Serve(ctx, localShell{}, relay.ServeOptions{Name: "seed", CacheDir: dir, Listen: listen, Token: tok,
		Deadline: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = relay.Serve(ctx, localShell{}, relay.ServeOptions{Name: "seed", CacheDir: dir, Listen: listen, Token: tok})
	if !errors.Is(err, relay.ErrPortInUse) {
		t.Errorf("second server on %s: %v, want ErrPortInUse", listen, err)
	}
	select {
	case <-srv.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the server outlived its deadline")
	}
	if c, err := net.DialTimeout("tcp", listen.String(), time.Second); err == nil {
		c.Close()
		t.Error("the port is still open after the deadline")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".serve.*")); len(left) > 0 {
		t.Errorf("the server left its run directory: %v", left)
	}
}

// lockedWriter lets a logger write from the server's goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newLogger(mu *sync.Mutex, b *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu, b}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
