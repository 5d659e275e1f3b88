package ssh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// This package's labs use 198.18.16.0/22 (see installer/sshtest).
var block = netip.MustParsePrefix("198.18.16.0/22")

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func endpoints(l *sshtest.Lab, user string) (jump *ssh.Endpoint, targets []ssh.Endpoint) {
	jump = &ssh.Endpoint{Name: "jump", Address: l.Jump.Addr.String(), User: "root", KeyFile: l.ClientKey}
	for _, h := range l.Hosts {
		targets = append(targets, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), User: user, KeyFile: l.ClientKey, Jump: jump})
	}
	return jump, targets
}

func newPool(t *testing.T, o ssh.Options) *ssh.Pool {
	t.Helper()
	p, err := ssh.NewPool(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestTransport covers the jump host, key-file and encrypted-key auth,
// known_hosts checking, sudo, uploads and host key errors against one lab
// of real sshd hosts.
func TestTransport(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 2, Jump: true})
	ctx := ctxT(t)
	_, targets := endpoints(l, "root")

	t.Run("targets are reachable only through the jump host", func(t *testing.T) {
		d := net.Dialer{Timeout: 2 * time.Second}
		if c, err := d.DialContext(ctx, "tcp", targets[0].Addr()); err == nil {
			c.Close()
			t.Fatalf("dialled %s directly: the lab must only be reachable through the jump host", targets[0].Addr())
		}
		direct := targets[0]
		direct.Jump = nil
		if _, err := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}}).Client(ctx, direct); err == nil {
			t.Fatal("an SSH connection without the jump host succeeded")
		}
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		for i, ep := range targets {
			c, err := p.Client(ctx, ep)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.Output(ctx, "cat /proc/net/fib_trie | grep -c "+l.Hosts[i].Addr.String()+"; id -un")
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(string(out)); len(f) != 2 || f[0] == "0" || f[1] != "root" {
				t.Fatalf("%s: got %q, want the host's own address and root", ep.Name, out)
			}
		}
		// The targets only ever saw the jump host's address.
		for _, h := range l.Hosts {
			for _, line := range strings.Split(h.Log(), "\n") {
				if strings.Contains(line, " from ") && !strings.Contains(line, " from "+l.JumpInner.String()+" ") {
					t.Errorf("%s saw a connection not from the jump host: %s", h.Name, line)
				}
			}
		}
		// One connection per host, reused.
		c1, _ := p.Client(ctx, targets[0])
		c2, _ := p.Client(ctx, targets[0])
		if c1 != c2 {
			t.Fatal("the pool dialled a second connection to the same host")
		}
	})

	t.Run("encrypted key with passphrase from the environment", func(t *testing.T) {
		dir := t.TempDir()
		key := filepath.Join(dir, "enc")
		pub, err := sshtest.GenerateKey(key, "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		appendAuthorized(t, l, pub)
		ep := targets[0]
		ep.KeyFile = key
		ep.Jump = &ssh.Endpoint{Name: "jump", Address: l.Jump.Addr.String(), KeyFile: key}
		t.Setenv("TEST_PASSPHRASE", "")
		os.Unsetenv("TEST_PASSPHRASE")
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}, PassphraseEnv: "TEST_PASSPHRASE"})
		if _, err := p.Client(ctx, ep); err == nil || !strings.Contains(err.Error(), "export TEST_PASSPHRASE") {
			t.Fatalf("want an error asking for TEST_PASSPHRASE, got %v", err)
		}
		t.Setenv("TEST_PASSPHRASE", "wrong")
		p = newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}, PassphraseEnv: "TEST_PASSPHRASE"})
		if _, err := p.Client(ctx, ep); err == nil || !strings.Contains(err.Error(), "does not decrypt") || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("want a wrong-passphrase error that does not echo it, got %v", err)
		}
		t.Setenv("TEST_PASSPHRASE", "correct horse")
		p = newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}, PassphraseEnv: "TEST_PASSPHRASE"})
		c, err := p.Client(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Output(ctx, "true"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ssh-agent", func(t *testing.T) {
		sock := startAgent(t)
		priv := addAgentKey(t, sock)
		pub, _ := xssh.NewPublicKey(priv.Public())
		appendAuthorized(t, l, pub)
		ep := targets[1]
		ep.KeyFile, ep.Agent = "", true
		ep.Jump = &ssh.Endpoint{Name: "jump", Address: l.Jump.Addr.String(), Agent: true}
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}, AgentSocket: sock})
		c, err := p.Client(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Output(ctx, "id -un")
		if err != nil || strings.TrimSpace(string(out)) != "root" {
			t.Fatalf("got %q, %v", out, err)
		}
		p2 := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}, AgentSocket: filepath.Join(t.TempDir(), "none")})
		if _, err := p2.Client(ctx, ep); err == nil || !strings.Contains(err.Error(), "ssh-agent") {
			t.Fatalf("want an ssh-agent error, got %v", err)
		}
	})

	t.Run("wrong key is an authentication error", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "other")
		if _, err := sshtest.GenerateKey(key, ""); err != nil {
			t.Fatal(err)
		}
		ep := targets[0]
		ep.KeyFile = key
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		_, err := p.Client(ctx, ep)
		if !errors.Is(err, ssh.ErrAuth) || ssh.IsTransient(err) {
			t.Fatalf("want ErrAuth (not transient), got %v", err)
		}
	})

	t.Run("sudo", func(t *testing.T) {
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		_, deploy := endpoints(l, "deploy")
		c, err := p.Client(ctx, deploy[0])
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Output(ctx, "id -un; "+c.AsRoot("id -un"))
		if err != nil || strings.Fields(string(out))[0] != "deploy" || strings.Fields(string(out))[1] != "root" {
			t.Fatalf("got %q, %v; want deploy then root", out, err)
		}
		_, pw := endpoints(l, "pwuser")
		c, err = p.Client(ctx, pw[0])
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Output(ctx, c.AsRoot("true"))
		if !errors.Is(err, ssh.ErrSudoPassword) || !strings.Contains(err.Error(), "NOPASSWD") {
			t.Fatalf("want ErrSudoPassword with a hint, got %v", err)
		}
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.Status == 0 {
			t.Fatalf("want the ExitError kept, got %#v", err)
		}
		// An upload needs root too, and says so.
		data := []byte("x")
		err = c.Put(ctx, bytes.NewReader(data), "/srv/pw.bin", ssh.PutOptions{SHA256: sum(data), Size: 1})
		if !errors.Is(err, ssh.ErrSudoPassword) || ssh.IsTransient(err) {
			t.Fatalf("upload without passwordless sudo: want ErrSudoPassword, got %v", err)
		}
	})

	t.Run("upload as a sudo user", func(t *testing.T) {
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		_, deploy := endpoints(l, "deploy")
		c, err := p.Client(ctx, deploy[1])
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("tricenter\n"), 100000)
		dst := "/etc/systemd/system/sudo-upload.conf"
		if err := c.Put(ctx, bytes.NewReader(data), dst, ssh.PutOptions{SHA256: sum(data), Size: int64(len(data)), Mode: 0o640, Owner: "root:deploy"}); err != nil {
			t.Fatal(err)
		}
		st, err := c.Stat(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		if st.SHA256 != sum(data) || st.Mode != 0o640 || st.Owner != "root:deploy" || st.Size != int64(len(data)) {
			t.Fatalf("remote state %+v", st)
		}
		// Nothing left in the staging area or next to the file.
		left, _ := filepath.Glob(l.Hosts[1].Path("/home/deploy/.tricenter-upload-*"))
		tmp, _ := filepath.Glob(l.Hosts[1].Path("/etc/systemd/system/.*tricenter-*"))
		if len(left)+len(tmp) != 0 {
			t.Fatalf("leftovers: %v %v", left, tmp)
		}
		// A wrong checksum is refused and nothing is installed.
		err = c.Put(ctx, bytes.NewReader([]byte("other")), "/srv/bad", ssh.PutOptions{SHA256: sum(data), Size: 5})
		if !errors.Is(err, ssh.ErrChecksumMismatch) {
			t.Fatalf("want ErrChecksumMismatch, got %v", err)
		}
		if _, err := os.Stat(l.Hosts[1].Path("/srv/bad")); !os.IsNotExist(err) {
			t.Fatalf("/srv/bad exists after a checksum mismatch: %v", err)
		}
	})

	t.Run("host key mismatch is a hard error and nothing is sent", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		otherPub, _ := xssh.NewPublicKey(other.Public())
		wrong := xssh.FingerprintSHA256(otherPub)
		ep := targets[0]
		ep.HostKey = wrong
		before := strings.Count(l.Hosts[0].Log(), "Accepted publickey")
		p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		_, err := p.Client(ctx, ep)
		if !errors.Is(err, ssh.ErrHostKeyMismatch) || ssh.IsTransient(err) {
			t.Fatalf("want ErrHostKeyMismatch, got %v", err)
		}
		for _, want := range []string{wrong, l.Hosts[0].Fingerprint, "node01", "hostKey"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		if after := strings.Count(l.Hosts[0].Log(), "Accepted publickey"); after != before {
			t.Fatalf("the client authenticated to a host with a mismatching key")
		}
		// The same through known_hosts: a file that lists another key.
		kh := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(kh, []byte(l.Jump.Addr.String()+" "+string(xssh.MarshalAuthorizedKey(l.Jump.HostKey))+
			l.Hosts[0].Addr.String()+" "+string(xssh.MarshalAuthorizedKey(otherPub))), 0o600)
		p = newPool(t, ssh.Options{KnownHosts: []string{kh}})
		_, err = p.Client(ctx, targets[0])
		if !errors.Is(err, ssh.ErrHostKeyMismatch) || !strings.Contains(err.Error(), kh+":2") || !strings.Contains(err.Error(), "ssh-keygen -R") {
			t.Fatalf("want a known_hosts mismatch naming %s:2, got %v", kh, err)
		}
		// A mismatching jump host stops everything behind it.
		jp := *targets[1].Jump
		jp.HostKey = wrong
		ep = targets[1]
		ep.Jump = &jp
		p = newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
		if _, err = p.Client(ctx, ep); !errors.Is(err, ssh.ErrHostKeyMismatch) || !strings.Contains(err.Error(), "jump") {
			t.Fatalf("want a jump host mismatch, got %v", err)
		}
	})

	t.Run("unknown host: strict refuses, accept-new records", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		p := newPool(t, ssh.Options{KnownHosts: []string{kh}})
		_, err := p.Client(ctx, targets[0])
		if !errors.Is(err, ssh.ErrHostKeyUnknown) || !strings.Contains(err.Error(), l.Jump.Fingerprint) || !strings.Contains(err.Error(), "--accept-new") {
			t.Fatalf("want ErrHostKeyUnknown naming the jump host's fingerprint, got %v", err)
		}
		var recorded []string
		var mu sync.Mutex
		p = newPool(t, ssh.Options{KnownHosts: []string{kh}, HostKeyPolicy: ssh.AcceptNew,
			OnNewHostKey: func(ep ssh.Endpoint, k xssh.PublicKey) {
				mu.Lock()
				recorded = append(recorded, ep.Name+"="+xssh.FingerprintSHA256(k))
				mu.Unlock()
			}})
		if _, err := p.Client(ctx, targets[0]); err != nil {
			t.Fatal(err)
		}
		want := []string{"jump=" + l.Jump.Fingerprint, "node01=" + l.Hosts[0].Fingerprint}
		if strings.Join(recorded, ",") != strings.Join(want, ",") {
			t.Fatalf("recorded %v, want %v", recorded, want)
		}
		// The recorded file now works in strict mode.
		p = newPool(t, ssh.Options{KnownHosts: []string{kh}})
		if _, err := p.Client(ctx, targets[0]); err != nil {
			t.Fatalf("strict with the recorded known_hosts: %v", err)
		}
		// accept-new still refuses a changed key.
		b, _ := os.ReadFile(kh)
		b = bytes.Replace(b, []byte(strings.TrimSpace(string(xssh.MarshalAuthorizedKey(l.Hosts[0].HostKey)))), []byte(strings.TrimSpace(string(xssh.MarshalAuthorizedKey(l.Hosts[1].HostKey)))), 1)
		os.WriteFile(kh, b, 0o600)
		p = newPool(t, ssh.Options{KnownHosts: []string{kh}, HostKeyPolicy: ssh.AcceptNew})
		if _, err := p.Client(ctx, targets[0]); !errors.Is(err, ssh.ErrHostKeyMismatch) {
			t.Fatalf("accept-new must refuse a changed key, got %v", err)
		}
	})

	t.Run("connection lost mid-upload is transient and leaves no partial file", func(t *testing.T) {
		proxy := sshtest.CutProxy(t, l.Gateway, l.Jump.Addr.String()+":22", 2<<20)
		host, port, _ := net.SplitHostPort(proxy)
		ep := targets[0]
		jp := *ep.Jump
		jp.Address = host
		jp.Port = atoi(port)
		jp.HostKey = l.Jump.Fingerprint
		ep.Jump = &jp
		ep.HostKey = l.Hosts[0].Fingerprint
		p := newPool(t, ssh.Options{})
		c, err := p.Client(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 8<<20)
		rand.Read(data)
		dst := "/srv/cut.bin"
		stop := sshtest.WatchNoPartial(t, l.Hosts[0].Path(dst), int64(len(data)))
		err = c.Put(ctx, bytes.NewReader(data), dst, ssh.PutOptions{SHA256: sum(data), Size: int64(len(data))})
		if err == nil || !ssh.IsTransient(err) || !errors.Is(err, ssh.ErrConnectionLost) {
			t.Fatalf("want a transient connection-lost error, got %v", err)
		}
		// The host keeps what it received, for a resume.
		waitNoPut(t, dst)
		parts, _ := filepath.Glob(l.Hosts[0].Path("/srv/.cut.bin.tricenter-*.part"))
		if len(parts) != 1 {
			t.Fatalf("want one partial file after the cut, got %v", parts)
		}
		st, err := os.Stat(parts[0])
		if err != nil || st.Size() == 0 || st.Size() >= int64(len(data)) || st.Mode().Perm() != 0o600 {
			t.Fatalf("partial file after the cut: %v %v", st, err)
		}
		// The pool redials; the second connection is not cut and sends
		// only the rest.
		c, err = p.Client(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		src := &countingSource{Reader: bytes.NewReader(data)}
		var progress atomic.Int64
		if err := c.Put(ctx, src, dst, ssh.PutOptions{SHA256: sum(data), Size: int64(len(data)),
			Progress: func(n int64) { progress.Add(n) }}); err != nil {
			t.Fatal(err)
		}
		if want := int64(len(data)) - st.Size(); src.n != want {
			t.Errorf("the resumed upload read %d bytes of the source, want %d", src.n, want)
		}
		if progress.Load() != int64(len(data)) {
			t.Errorf("progress reported %d bytes, want %d", progress.Load(), len(data))
		}
		stop()
		got, err := os.ReadFile(l.Hosts[0].Path(dst))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("final file differs (%v)", err)
		}
		tmp, _ := filepath.Glob(l.Hosts[0].Path("/srv/.cut.bin.tricenter-*"))
		if len(tmp) != 0 {
			t.Fatalf("temporary files left: %v", tmp)
		}
	})
}

// TestPutStates covers what an upload finds on the host: an identical
// file (hashed only when its size matches), a directory in the way, a
// corrupt partial file (discarded, the upload restarts from the
// beginning), a partial file with a source that cannot seek.
func TestPutStates(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t)
	h := l.Hosts[0]
	p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
	c, err := p.Client(ctx, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), KeyFile: l.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	o := ssh.PutOptions{SHA256: sum(data), Size: int64(len(data)), Mode: 0o600}

	t.Run("identical file", func(t *testing.T) {
		if err := c.Put(ctx, bytes.NewReader(data), "/srv/same.bin", o); err != nil {
			t.Fatal(err)
		}
		u, err := c.OpenPut(ctx, "/srv/same.bin", o)
		if err != nil {
			t.Fatal(err)
		}
		st := u.State()
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		if !st.Exists || st.SHA256 != o.SHA256 || st.Size != int64(len(data)) || st.Mode != 0o600 || st.Owner != "root:root" {
			t.Fatalf("state %+v", st)
		}
		// Another expected size: the file is not hashed.
		o2 := o
		o2.Size++
		u, err = c.OpenPut(ctx, "/srv/same.bin", o2)
		if err != nil {
			t.Fatal(err)
		}
		if st := u.State(); !st.Exists || st.SHA256 != "" {
			t.Fatalf("state with another size %+v", st)
		}
		u.Close()
		// Fix sets the mode alone.
		o3 := o
		o3.Mode = 0o644
		u, err = c.OpenPut(ctx, "/srv/same.bin", o3)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.Fix(ctx); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(h.Path("/srv/same.bin")); st.Mode().Perm() != 0o644 {
			t.Fatalf("mode after Fix %o", st.Mode().Perm())
		}
	})

	t.Run("awkward path", func(t *testing.T) {
		dst := "/srv/with space/it's *.bin"
		if err := c.Put(ctx, bytes.NewReader(data), dst, o); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(h.Path(dst)); !bytes.Equal(got, data) {
			t.Fatal("file differs")
		}
		if left, _ := filepath.Glob(h.Path("/srv/with space/.*")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
		st, err := c.Stat(ctx, dst)
		if err != nil || st.SHA256 != o.SHA256 {
			t.Fatalf("Stat %+v, %v", st, err)
		}
	})

	t.Run("directory in the way", func(t *testing.T) {
		os.MkdirAll(h.Path("/srv/adir"), 0o755)
		_, err := c.OpenPut(ctx, "/srv/adir", o)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("want a not-a-regular-file error, got %v", err)
		}
		if _, err := c.OpenPut(ctx, "/srv/../etc/x", o); err == nil {
			t.Fatal("an unclean target path was accepted")
		}
	})

	part := func(name string) string { return h.Path("/srv/." + name + ".tricenter-" + o.SHA256[:16] + ".part") }

	t.Run("corrupt partial file restarts from the beginning", func(t *testing.T) {
		junk := make([]byte, 1<<20)
		rand.Read(junk)
		if err := os.WriteFile(part("corrupt.bin"), junk, 0o600); err != nil {
			t.Fatal(err)
		}
		var progress atomic.Int64
		o := o
		o.Progress = func(n int64) { progress.Add(n) }
		if err := c.Put(ctx, bytes.NewReader(data), "/srv/corrupt.bin", o); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(h.Path("/srv/corrupt.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("file differs after a restart (%v)", err)
		}
		if progress.Load() != int64(len(data)) {
			t.Errorf("progress reported %d bytes, want %d", progress.Load(), len(data))
		}
		if left, _ := filepath.Glob(h.Path("/srv/.corrupt.bin.tricenter-*")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})

	t.Run("partial file that changes before the send restarts from the beginning", func(t *testing.T) {
		if err := os.WriteFile(part("moving.bin"), data[:1<<20], 0o600); err != nil {
			t.Fatal(err)
		}
		u, err := c.OpenPut(ctx, "/srv/moving.bin", o)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if u.Resume() != 1<<20 {
			t.Fatalf("Resume %d, want %d", u.Resume(), 1<<20)
		}
		f, _ := os.OpenFile(part("moving.bin"), os.O_APPEND|os.O_WRONLY, 0)
		f.Write(data[1<<20 : 1<<20+100])
		f.Close()
		src := &countingSource{Reader: bytes.NewReader(data)}
		if err := u.Send(ctx, src); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(h.Path("/srv/moving.bin")); !bytes.Equal(got, data) {
			t.Fatal("file differs")
		}
	})

	t.Run("corrupt partial file with a source that cannot seek", func(t *testing.T) {
		if err := os.WriteFile(part("noseek.bin"), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := c.Put(ctx, io.MultiReader(bytes.NewReader(data)), "/srv/noseek.bin", o)
		if err == nil || !ssh.IsTransient(err) {
			t.Fatalf("want a transient error, got %v", err)
		}
		if _, err := os.Stat(part("noseek.bin")); !os.IsNotExist(err) {
			t.Fatalf("the corrupt partial file is still there: %v", err)
		}
		if _, err := os.Stat(h.Path("/srv/noseek.bin")); !os.IsNotExist(err) {
			t.Fatalf("a file was installed from a corrupt partial one: %v", err)
		}
		if err := c.Put(ctx, io.MultiReader(bytes.NewReader(data)), "/srv/noseek.bin", o); err != nil {
			t.Fatalf("the retry: %v", err)
		}
	})

	t.Run("partial file planted as a symlink is not followed", func(t *testing.T) {
		victim := h.Path("/srv/victim")
		os.WriteFile(victim, []byte("keep"), 0o600)
		if err := os.Symlink("/srv/victim", part("link.bin")); err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, bytes.NewReader(data), "/srv/link.bin", o); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep" {
			t.Fatalf("the upload wrote through a planted symlink: %q", b)
		}
		if got, _ := os.ReadFile(h.Path("/srv/link.bin")); !bytes.Equal(got, data) {
			t.Fatal("file differs")
		}
	})
}

// countingSource counts the bytes read from a seekable source.
type countingSource struct {
	*bytes.Reader
	n int64
}

func (c *countingSource) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	c.n += int64(n)
	return n, err
}

// waitNoPut waits until no upload script for dst runs on any lab host.
func waitNoPut(t *testing.T, dst string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		busy := false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && bytes.Contains(b, []byte("tricenter-put")) && bytes.Contains(b, []byte(dst)) {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upload of %s still runs on the host", dst)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCertificateAuthority checks that a host certificate signed by a CA
// listed with @cert-authority is accepted without any per-host key, and
// that a CA that did not sign it is refused.
func TestCertificateAuthority(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1, Jump: true, CA: true})
	ctx := ctxT(t)
	_, targets := endpoints(l, "root")
	p := newPool(t, ssh.Options{KnownHosts: []string{l.CAKnownHosts}})
	c, err := p.Client(ctx, targets[0])
	if err != nil {
		t.Fatalf("with only the @cert-authority line: %v", err)
	}
	if _, err := c.Output(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	// Another CA: unknown host.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	op, _ := xssh.NewPublicKey(other)
	kh := filepath.Join(t.TempDir(), "kh")
	os.WriteFile(kh, []byte("@cert-authority 198.18.* "+string(xssh.MarshalAuthorizedKey(op))), 0o600)
	p = newPool(t, ssh.Options{KnownHosts: []string{kh}})
	if _, err := p.Client(ctx, targets[0]); !errors.Is(err, ssh.ErrHostKeyUnknown) {
		t.Fatalf("want ErrHostKeyUnknown with a foreign CA, got %v", err)
	}
	// A plain known_hosts entry still works for a host that has a certificate.
	p = newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
	if _, err := p.Client(ctx, targets[0]); err != nil {
		t.Fatalf("plain known_hosts for a certificate host: %v", err)
	}
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

func appendAuthorized(t *testing.T, l *sshtest.Lab, pub xssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(l.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(xssh.MarshalAuthorizedKey(pub))
}

// startAgent runs a real ssh-agent in the foreground and kills it by pid.
func startAgent(t *testing.T) string {
	t.Helper()
	testenv.RequireBinary(t, "ssh-agent")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func addAgentKey(t *testing.T, sock string) ed25519.PrivateKey {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := agent.NewClient(c).Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	return priv
}
