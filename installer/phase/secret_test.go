package phase_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestSecretLeavesNoTrace writes a secret to a real sshd host as a non-root
// login (so every root command goes through sudo, which logs it) and
// searches everything the write left outside the file itself for the
// secret and its sha256, sha1 and md5 (any 12 hex characters of them): the
// slog output, the dry-run and change records, the progress lines, every
// command line sshd ran (through a logging login shell), every command
// sudo ran (its log file, as auth.log would have it), the command lines of
// the processes seen on the machine while it ran, and the names of every
// file created in the target's directory (inotify). A control write of
// the same content without Secret must be found, so the search is known
// to work.
func TestSecretLeavesNoTrace(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t, 2*time.Minute)
	h := l.Hosts[0]

	// Every command line sshd runs for deploy goes through a logging shell.
	argvLog := filepath.Join(l.Dir, "argv.log")
	if err := os.WriteFile(argvLog, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(argvLog, 0o666)
	logsh := filepath.Join(l.Dir, "logsh")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + argvLog + "\nexec /bin/sh \"$@\"\n"
	if err := os.WriteFile(logsh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l.SetLoginShell(t, "deploy", logsh)
	// sudo logs every command it runs, with its arguments, unwrapped.
	sudoLog := filepath.Join(l.Dir, "sudo.log")
	if err := os.WriteFile(filepath.Join(l.Dir, "sudoers.d", "zz-log"),
		[]byte("Defaults logfile="+sudoLog+"\nDefaults loglinelen=0\n"), 0o440); err != nil {
		t.Fatal(err)
	}

	secret := make([]byte, 12)
	rand.Read(secret)
	content := []byte("pw-" + hex.EncodeToString(secret) + "\n")
	needles := secretNeedles(content)

	const dir = "/srv/bgp"
	if err := os.MkdirAll(h.Path(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	created := watchCreated(t, h.Path(dir))
	procs := watchCmdlines(t)

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := l.Cluster(sshtest.ClusterOptions{User: "deploy", PinHostKeys: true})
	write := func(path string, mode fs.FileMode, secret bool) *phase.HostPhase {
		return &phase.HostPhase{Name: "Write the password", Apply: func(ctx context.Context, h *phase.Host) error {
			res, err := h.WriteFileOpts(ctx, path, content, phase.FileOptions{Mode: mode, Secret: secret})
			fmt.Fprintf(&lockedWriter{w: &logs, mu: &logMu}, "result %+v\n", res)
			return err
		}}
	}
	var records []string
	run := func(dry bool, p *phase.HostPhase) {
		t.Helper()
		rec := &recorder{}
		m := &phase.Manager{Cluster: c, DryRun: dry, Logger: logger, Progress: rec}
		defer m.Close()
		if err := m.Run(ctx, p); err != nil {
			t.Fatal(err)
		}
		records = append(records, rec.all())
		for _, ch := range m.Changes() {
			records = append(records, ch...)
		}
	}
	target := dir + "/password"
	run(true, write(target, 0o600, true))  // dry run
	run(false, write(target, 0o600, true)) // write
	run(false, write(target, 0o600, true)) // unchanged
	run(false, write(target, 0o640, true)) // mode fixed

	// InstallFiles' state query compares the secret on the host too.
	installed := dir + "/installed-password"
	install := &phase.HostPhase{Name: "Install the password", Apply: func(ctx context.Context, h *phase.Host) error {
		res, err := h.InstallFiles(ctx, dir+"/install.record", []phase.File{{Path: installed, Data: content, Mode: 0o600, Secret: true}})
		fmt.Fprintf(&lockedWriter{w: &logs, mu: &logMu}, "installed %+v\n", res)
		return err
	}}
	run(true, install)  // dry run
	run(false, install) // write
	run(false, install) // unchanged, by the state query

	got, err := os.ReadFile(h.Path(target))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the host holds %q (%v), want the secret", got, err)
	}
	if st, _ := os.Stat(h.Path(target)); st == nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode of %s: %v", target, st)
	}
	if left, _ := filepath.Glob(h.Path(dir + "/.*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	all := strings.Join(records, "\n")
	for _, want := range []string{"would write " + target + " (secret content, ", "write " + target + " (secret content, ", "set chmod 640"} {
		if !strings.Contains(all, want) {
			t.Errorf("the change records lack %q:\n%s", want, all)
		}
	}
	if n := strings.Count(all, "\nwrite "+target); n != 1 {
		t.Errorf("the secret was written %d times, want once (the second run finds it unchanged):\n%s", n, all)
	}
	if n := strings.Count(all, "\nwrite "+installed+" (secret content, "); n != 1 {
		t.Errorf("the installed secret was written %d times, want once (the state query finds it unchanged):\n%s", n, all)
	}
	if b, err := os.ReadFile(h.Path(installed)); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("the host holds %q (%v) at %s, want the secret", b, err, installed)
	}

	argv, _ := os.ReadFile(argvLog)
	sudo, _ := os.ReadFile(sudoLog)
	// The capture works: the upload's command lines are in both logs, and
	// its temporary file was seen.
	if !bytes.Contains(argv, []byte("tricenter-put")) {
		t.Fatalf("the logging shell did not record the upload:\n%s", argv)
	}
	if !bytes.Contains(sudo, []byte("COMMAND=")) || !bytes.Contains(sudo, []byte("tricenter-put")) {
		t.Fatalf("sudo did not log the upload:\n%s", sudo)
	}
	if !bytes.Contains(argv, []byte("tricenter-file")) || !bytes.Contains(sudo, []byte("tricenter-file")) {
		t.Fatalf("the logs lack InstallFiles' state query:\n%s\n%s", argv, sudo)
	}
	names := created()
	if !strings.Contains(strings.Join(names, " "), ".password.tricenter-") {
		t.Fatalf("no temporary file seen in %s: %v", dir, names)
	}
	sources := map[string]string{
		"slog output":             logs.String(),
		"change records":          all,
		"sshd command lines":      string(argv),
		"sudo log":                string(sudo),
		"process command lines":   strings.Join(procs(), "\n"),
		"file names in " + dir:    strings.Join(names, "\n"),
		"sshd log":                h.Log(),
		"remote paths after runs": strings.Join(listDir(h.Path(dir)), "\n"),
	}
	for src, text := range sources {
		if what := findNeedle(text, needles); what != "" {
			t.Errorf("%s found in the %s:\n%s", what, src, text)
		}
	}

	// Control: the same content written as ordinary content is found by
	// the same search (its digest prefix is in the change record).
	logs.Reset()
	run(false, write(dir+"/control", 0o600, false))
	if what := findNeedle(logs.String(), needles); !strings.Contains(what, "sha256") {
		t.Fatalf("the search missed the digest of a non-secret write (found %q) in:\n%s", what, logs.String())
	}
}

// secretNeedles are the secret (with and without its newline) and every
// 12-character window of the hex sha256, sha1 and md5 of both.
func secretNeedles(content []byte) map[string]string {
	out := map[string]string{}
	for _, b := range [][]byte{content, bytes.TrimSpace(content)} {
		out[string(bytes.TrimSpace(b))] = "the secret itself"
		s256, s1, m5 := sha256.Sum256(b), sha1.Sum(b), md5.Sum(b)
		for name, sum := range map[string][]byte{"sha256": s256[:], "sha1": s1[:], "md5": m5[:]} {
			x := hex.EncodeToString(sum)
			for i := 0; i+12 <= len(x); i++ {
				out[x[i:i+12]] = fmt.Sprintf("12 hex characters of its %s (%s…)", name, x[:12])
			}
		}
	}
	return out
}

func findNeedle(text string, needles map[string]string) string {
	text = strings.ToLower(text)
	for n, what := range needles {
		if strings.Contains(text, strings.ToLower(n)) {
			return what
		}
	}
	return ""
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func listDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// watchCreated records, with inotify, the name of every file created in
// or moved into or out of dir until the returned functions are called.
func watchCreated(t *testing.T, dir string) (stop func() []string) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_MOVED_FROM); err != nil {
		syscall.Close(fd)
		t.Fatalf("inotify on %s: %v", dir, err)
	}
	// Non-blocking, so the runtime poller serves reads and Close ends one.
	f := os.NewFile(uintptr(fd), "inotify")
	var mu sync.Mutex
	var names []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil || n <= 0 {
				return
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
				mu.Lock()
				names = append(names, string(bytes.TrimRight(name, "\x00")))
				mu.Unlock()
				off += syscall.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}()
	return func() []string {
		f.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), names...)
	}
}

// watchCmdlines samples the command line of every process on the machine
// until the returned functions are called: short-lived commands may be
// missed, long ones (the upload script, sudo) are seen.
func watchCmdlines(t *testing.T) (stop func() []string) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]bool{}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				if e.Name()[0] < '0' || e.Name()[0] > '9' {
					continue
				}
				b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				if err != nil || len(b) == 0 {
					continue
				}
				s := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
				mu.Lock()
				seen[s] = true
				mu.Unlock()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() []string {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		out := make([]string, 0, len(seen))
		for s := range seen {
			out = append(out, s)
		}
		return out
	}
}
