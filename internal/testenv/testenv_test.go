package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsCI(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "TRUE": true, "1": true, " true\n": true,
		"": false, "false": false, "0": false, "yes": false, "ci": false} {
		if got := isCI(v); got != want {
			t.Errorf("isCI(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestVerdict(t *testing.T) {
	const what = "ipmi_sim (Debian package openipmi): run make deps"
	for _, tc := range []struct {
		ci       bool
		wantFail bool
		want     []string
	}{
		{ci: true, wantFail: true, want: []string{"CI=true", "missing: " + what}},
		{ci: false, wantFail: false, want: []string{"missing: " + what, "skipped"}},
	} {
		fail, msg := verdict(tc.ci, what)
		if fail != tc.wantFail {
			t.Errorf("verdict(ci=%v) fail = %v, want %v", tc.ci, fail, tc.wantFail)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("verdict(ci=%v) message %q does not contain %q", tc.ci, msg, w)
			}
		}
	}
}

func TestBinaryMessage(t *testing.T) {
	got := binaryMessage([]string{"ipmi_sim", "/usr/lib/frr/bgpd", "no-such-tool"})
	want := "ipmi_sim (Debian package openipmi), /usr/lib/frr/bgpd (Debian package frr), no-such-tool: run make deps"
	if got != want {
		t.Errorf("binaryMessage = %q\nwant %q", got, want)
	}
}

// fakeTB records what a helper does instead of ending the test: a fake,
// for the unit tests of the helpers' decisions.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed = fmt.Sprint(args...) }

// TestHelpers runs each helper with something present and something
// missing, outside and under CI.
func TestHelpers(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		run     func(testing.TB)
		missing string // "" when nothing is missing
	}{
		{"require ok", func(tb testing.TB) { Require(tb, "thing", true) }, ""},
		{"require missing", func(tb testing.TB) { Require(tb, "thing: get it", false) }, "thing: get it"},
		{"need nil", func(tb testing.TB) { Need(tb, nil) }, ""},
		{"need error", func(tb testing.TB) { Need(tb, errors.New("sshd is missing: run make deps")) }, "sshd is missing: run make deps"},
		{"binary absolute present", func(tb testing.TB) { RequireBinary(tb, self) }, ""},
		{"binary absolute missing", func(tb testing.TB) { RequireBinary(tb, self, filepath.Join(dir, "bgpd")) },
			filepath.Join(dir, "bgpd") + " (Debian package frr): run make deps"},
		{"binary not executable", func(tb testing.TB) { RequireBinary(tb, notExec) }, notExec + ": run make deps"},
		{"binary in PATH missing", func(tb testing.TB) { RequireBinary(tb, "tricenter-testenv-no-such-tool") },
			"tricenter-testenv-no-such-tool: run make deps"},
		{"file present", func(tb testing.TB) { RequireFile(tb, "run make artifacts", dir, notExec) }, ""},
		{"file missing", func(tb testing.TB) { RequireFile(tb, "run make artifacts", dir, filepath.Join(dir, "etcd")) },
			filepath.Join(dir, "etcd") + ": run make artifacts"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name    string
			run     func(testing.TB)
			missing string
		}{"root", func(tb testing.TB) { RequireRoot(tb, "UDP port 623") }, ""})
	} else {
		cases = append(cases, struct {
			name    string
			run     func(testing.TB)
			missing string
		}{"root", func(tb testing.TB) { RequireRoot(tb, "UDP port 623") }, "root (UDP port 623): run the tests as root"})
	}
	for _, tc := range cases {
		for _, ci := range []string{"", "true"} {
			t.Run(tc.name+"/CI="+ci, func(t *testing.T) {
				t.Setenv(EnvCI, ci)
				f := &fakeTB{}
				tc.run(f)
				switch {
				case tc.missing == "":
					if f.skipped != "" || f.failed != "" {
						t.Errorf("nothing is missing, yet skipped %q, failed %q", f.skipped, f.failed)
					}
				case ci == "true":
					if f.skipped != "" || !strings.Contains(f.failed, "CI=true") || !strings.Contains(f.failed, "missing: "+tc.missing) {
						t.Errorf("under CI: skipped %q, failed %q; want a failure naming %q", f.skipped, f.failed, tc.missing)
					}
				default:
					if f.failed != "" || !strings.Contains(f.skipped, "missing: "+tc.missing) {
						t.Errorf("outside CI: skipped %q, failed %q; want a skip naming %q", f.skipped, f.failed, tc.missing)
					}
				}
			})
		}
	}
}

// childEnv marks the re-executed test binary that runs TestChildRequireIPMISim.
const childEnv = "TRICENTER_TESTENV_CHILD"

// TestChildRequireIPMISim is the body the re-executed test binary runs
// (TestRealTestOutcome); in a normal run it returns at once.
func TestChildRequireIPMISim(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		return
	}
	RequireBinary(t, "ipmi_sim")
	t.Log("ipmi_sim found")
}

// TestRealTestOutcome re-executes this test binary with a PATH that lacks
// ipmi_sim (or has it) and checks what `go test` reports: under CI=true a
// FAIL naming ipmi_sim and its package, otherwise a SKIP naming it.
func TestRealTestOutcome(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	withSim := t.TempDir()
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("true (coreutils) not found: %v", err)
	}
	if err := os.Symlink(truePath, filepath.Join(withSim, "ipmi_sim")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ci, path string
		wantFail bool
		want     []string
	}{
		{"CI missing", "true", empty, true, []string{"--- FAIL: TestChildRequireIPMISim", "CI=true", "missing: ipmi_sim (Debian package openipmi)"}},
		{"no CI missing", "", empty, false, []string{"--- SKIP: TestChildRequireIPMISim", "missing: ipmi_sim (Debian package openipmi)"}},
		{"CI false missing", "false", empty, false, []string{"--- SKIP: TestChildRequireIPMISim"}},
		{"CI present", "true", withSim, false, []string{"--- PASS: TestChildRequireIPMISim", "ipmi_sim found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(self, "-test.run=^TestChildRequireIPMISim$", "-test.v", "-test.count=1")
			cmd.Env = []string{childEnv + "=1", "PATH=" + tc.path, "HOME=" + t.TempDir()}
			if tc.ci != "" {
				cmd.Env = append(cmd.Env, EnvCI+"="+tc.ci)
			}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case tc.wantFail && !errors.As(err, &exit):
				t.Errorf("child test did not fail (err %v):\n%s", err, out)
			case !tc.wantFail && err != nil:
				t.Errorf("child test failed: %v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output does not contain %q:\n%s", w, out)
				}
			}
			if tc.wantFail && strings.Contains(string(out), "ipmi_sim found") {
				t.Errorf("child test went on past the missing binary:\n%s", out)
			}
		})
	}
}
