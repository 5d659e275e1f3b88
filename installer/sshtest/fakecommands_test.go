package sshtest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
)

// sshtest's own labs use 198.18.124.0/22 (see the package comment).
var block = netip.MustParsePrefix("198.18.124.0/22")

func TestWithLoginShell(t *testing.T) {
	const passwd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"deploy:x:1990:1990:tricenter test:/home/deploy:/bin/sh\n"
	got, err := withLoginShell([]byte(passwd), "root", "/lab/fakeshell")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(passwd, "/root:/bin/bash", "/root:/lab/fakeshell", 1); string(got) != want {
		t.Fatalf("root's shell:\n%s\nwant:\n%s", got, want)
	}
	got, err = withLoginShell(got, "deploy", "/lab/logsh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "deploy:x:1990:1990:tricenter test:/home/deploy:/lab/logsh\n") ||
		!strings.HasPrefix(string(got), "root:x:0:0:root:/root:/lab/fakeshell\n") {
		t.Fatalf("deploy's shell:\n%s", got)
	}
	// A user named like the start of another, or in another field, is not it.
	if _, err := withLoginShell([]byte(passwd), "dep", "/x"); err == nil || !strings.Contains(err.Error(), `no line for user "dep"`) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := withLoginShell([]byte(passwd), "0", "/x"); err == nil {
		t.Fatal("a uid matched as a user name")
	}
}

// TestFakeCommands: over real SSH, root runs the fake (first in PATH,
// before this machine's binary of the same name) and the rest of the
// machine's commands, a second call adds a fake, and deploy's PATH is
// untouched.
func TestFakeCommands(t *testing.T) {
	l := New(t, Options{Block: block, Hosts: 1})
	h := l.Hosts[0]
	dir := l.FakeCommands(t, map[string]string{"uname": "#!/bin/sh\necho \"fake uname $*\"\necho \"$*\" >> /srv/fake-calls\n"})
	if fi, err := os.Stat(dir + "/uname"); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("fake uname in %s: %v", dir, err)
	}
	l.FakeCommands(t, map[string]string{"systemctl": "#!/bin/sh\necho fake systemctl\n"})

	if out := runSSH(t, l, h, "root", "uname -r; systemctl is-active x; id -un"); out != "fake uname -r\nfake systemctl\nroot\n" {
		t.Fatalf("root's commands printed %q", out)
	}
	if b, err := os.ReadFile(h.Path("/srv/fake-calls")); err != nil || string(b) != "-r\n" {
		t.Fatalf("the fake's record on the host: %q, %v", b, err)
	}
	if out := runSSH(t, l, h, "deploy", "uname"); out != "Linux\n" {
		t.Fatalf("deploy ran %q, want the machine's uname", out)
	}
}

// runSSH runs cmd as user on h and returns its stdout.
func runSSH(t *testing.T, l *Lab, h *Host, user, cmd string) string {
	t.Helper()
	key, err := os.ReadFile(l.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := xssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xssh.Dial("tcp", net.JoinHostPort(h.Addr.String(), "22"), &xssh.ClientConfig{
		User: user, Auth: []xssh.AuthMethod{xssh.PublicKeys(signer)},
		HostKeyCallback: xssh.FixedHostKey(h.HostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh %s@%s: %v", user, h.Name, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Output(cmd)
	if err != nil {
		t.Fatalf("ssh %s@%s %q: %v (%s)", user, h.Name, cmd, err, out)
	}
	return string(out)
}

// fatalRecorder is a testing.TB whose Fatalf records instead of ending
// the test (what it checks returns right after a Fatalf).
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

// TestRequireUnreachable: a target behind the jump host passes; the jump
// host, which the test process reaches, fails naming it.
func TestRequireUnreachable(t *testing.T) {
	l := New(t, Options{Block: block, Hosts: 1, Jump: true})
	l.Hosts[0].RequireUnreachable(t)
	r := &fatalRecorder{TB: t}
	l.Jump.RequireUnreachable(r)
	if !strings.Contains(r.fatal, l.Jump.Name+" ("+l.Jump.Addr.String()+":22) is reachable directly") {
		t.Fatalf("the reachable jump host passed: %q", r.fatal)
	}
}
