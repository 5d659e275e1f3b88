package hack

// Tests of hack/deps.sh: it exits 0 only when every package of its list is
// installed afterwards. Each case runs a copy of the script next to its own
// packages.txt; real dpkg-query answers whether a package is installed.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

const noSuchPackage = "tricenter-no-such-package"

// scriptCopy writes hack/deps.sh and a packages.txt listing pkgs into a
// new directory readable by every user and returns the script's path.
func scriptCopy(t *testing.T, pkgs ...string) string {
	t.Helper()
	testenv.RequireBinary(t, "dpkg-query", "bash")
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile("deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "hack"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "hack", "deps.sh")
	if err := os.WriteFile(script, src, 0o755); err != nil {
		t.Fatal(err)
	}
	list := "# test list\n\n" + strings.Join(pkgs, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hack", "packages.txt"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	return script
}

// fakeAptGet puts a fake apt-get first in PATH: it records its arguments
// in calls and exits with updateRC for update and installRC for install,
// installing nothing. It returns the PATH to use and the calls file.
func fakeAptGet(t *testing.T, updateRC, installRC int) (path, calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$*\" >> " + calls + "\n" +
		"case \"$1\" in update) exit " + strconv.Itoa(updateRC) + ";; install) echo 'E: fake apt-get installs nothing' >&2; exit " + strconv.Itoa(installRC) + ";; esac\nexit 2\n"
	if err := os.WriteFile(filepath.Join(dir, "apt-get"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + ":" + os.Getenv("PATH"), calls
}

func run(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("running %s: %v\n%s", cmd.Path, err, out)
	return "", 0
}

func TestDepsAllInstalled(t *testing.T) {
	out, rc := run(t, exec.Command(scriptCopy(t, "bash", "coreutils")))
	if rc != 0 {
		t.Errorf("exit %d with every package installed:\n%s", rc, out)
	}
}

// A user that is not root cannot install: the script fails naming the
// missing package (it used to be the only failing path; keep it).
func TestDepsNotRoot(t *testing.T) {
	script := scriptCopy(t, "bash", noSuchPackage)
	cmd := exec.Command(script)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, rc := run(t, cmd)
	if rc == 0 || !strings.Contains(out, noSuchPackage) || !strings.Contains(out, "not root") || strings.Contains(out, "missing Debian packages: bash") {
		t.Errorf("not root, %s missing: exit %d, output:\n%s", noSuchPackage, rc, out)
	}
}

// As root, whatever way apt-get fails to install, the script exits non-zero
// naming the package, and removes the policy-rc.d it created.
func TestDepsRootInstallFails(t *testing.T) {
	testenv.RequireRoot(t, "deps.sh installs packages only as root")
	for _, tc := range []struct {
		name                string
		updateRC, installRC int
		want                string
		wantInstall         bool
	}{
		{"update fails", 100, 0, "apt-get update failed", false},
		{"install fails", 0, 100, "apt-get install failed", true},
		{"install succeeds but installs nothing", 0, 0, "still not installed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := scriptCopy(t, "bash", noSuchPackage)
			path, calls := fakeAptGet(t, tc.updateRC, tc.installRC)
			policy := filepath.Join(t.TempDir(), "policy-rc.d")
			cmd := exec.Command(script)
			cmd.Env = append(os.Environ(), "PATH="+path, "TRICENTER_POLICY_RC_D="+policy)
			out, rc := run(t, cmd)
			if rc == 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, "missing Debian packages: "+noSuchPackage+"\n") {
				t.Errorf("exit %d, want non-zero naming %s and %q; output:\n%s", rc, noSuchPackage, tc.want, out)
			}
			got, err := os.ReadFile(calls)
			if err != nil {
				t.Fatalf("fake apt-get never ran: %v\n%s", err, out)
			}
			install := strings.Contains(string(got), "install -y -qq --no-install-recommends "+noSuchPackage+"\n")
			if install != tc.wantInstall {
				t.Errorf("apt-get calls %q: install of %s called = %v, want %v", got, noSuchPackage, install, tc.wantInstall)
			}
			if _, err := os.Stat(policy); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("policy-rc.d left behind: %v", err)
			}
		})
	}
}
