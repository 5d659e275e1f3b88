package sshtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// FakeCommands gives the lab's hosts fake commands: it writes scripts
// (command name → the script, #! line included) as executables into the
// lab's fakebin directory and makes root's login shell put that directory
// first in PATH, so that a command run as root over SSH finds the fakes
// before this machine's binaries (which the hosts share). A script keeps
// what it must remember under the host's private /srv. Called again, it
// adds or replaces scripts. It returns the fakebin directory.
func (l *Lab) FakeCommands(t testing.TB, scripts map[string]string) (dir string) {
	t.Helper()
	dir = filepath.Join(l.Dir, "fakebin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, script := range scripts {
		if name == "" || strings.ContainsRune(name, '/') || !strings.HasPrefix(script, "#!") {
			t.Fatalf("sshtest: fake command %q: give a plain command name and a script starting with #!", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh := filepath.Join(l.Dir, "fakeshell")
	if err := os.WriteFile(sh, []byte("#!/bin/sh\nPATH="+shell.Quote(dir)+":$PATH; export PATH\nexec /bin/sh \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l.SetLoginShell(t, "root", sh)
	return dir
}

// SetLoginShell makes path the login shell of user (root, deploy or
// pwuser) on every host of the lab, as chsh would.
func (l *Lab) SetLoginShell(t testing.TB, user, path string) {
	t.Helper()
	passwd := filepath.Join(l.Dir, "passwd")
	b, err := os.ReadFile(passwd)
	if err != nil {
		t.Fatal(err)
	}
	b, err = withLoginShell(b, user, path)
	if err != nil {
		t.Fatal(err)
	}
	// In place: the hosts see the file through a bind mount of its inode.
	if err := os.WriteFile(passwd, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// withLoginShell is passwd with user's login shell (its seventh field)
// set to path.
func withLoginShell(passwd []byte, user, path string) ([]byte, error) {
	lines := strings.Split(string(passwd), "\n")
	found := false
	for i, ln := range lines {
		if f := strings.Split(ln, ":"); len(f) == 7 && f[0] == user {
			f[6] = path
			lines[i] = strings.Join(f, ":")
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("sshtest: the lab's passwd has no line for user %q", user)
	}
	return []byte(strings.Join(lines, "\n")), nil
}
