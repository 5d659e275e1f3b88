package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/version"
)

// TestVersionStamp builds the CLI as make build does (hack/version.sh's
// -ldflags -X, with VERSION set as for a release) and checks that
// tricenter version and --version print the stamp: the version, the
// commit of this tree when it is a Git checkout, the Go version.
func TestVersionStamp(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the CLI needs the go command on PATH: %v", err)
	}
	const want = "v9.8.7-stamp.test"
	script := exec.Command("../../hack/version.sh")
	script.Env = append(os.Environ(), "VERSION="+want)
	ldflags, err := script.Output()
	if err != nil {
		t.Fatalf("hack/version.sh: %v", err)
	}
	if !strings.Contains(string(ldflags), "internal/version.version="+want) {
		t.Fatalf("hack/version.sh does not stamp VERSION: %s", ldflags)
	}
	// The commit the stamp should name: none outside a Git checkout.
	rev := ""
	if top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
		abs, err := filepath.Abs("../..")
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(top)) == abs {
			out, err := exec.Command("git", "rev-parse", "HEAD").Output()
			if err != nil {
				t.Fatal(err)
			}
			rev = strings.TrimSpace(string(out))
		}
	}

	bin := filepath.Join(t.TempDir(), "tricenter")
	build := exec.Command(gobin, "build", "-trimpath", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tricenter %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	out := run("version")
	for _, re := range []string{
		`(?m)^version\s+` + regexp.QuoteMeta(want) + `$`,
		`(?m)^go\s+` + regexp.QuoteMeta(runtime.Version()) + `$`,
		`(?m)^platform\s+` + runtime.GOOS + "/" + runtime.GOARCH + `$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("tricenter version does not match %s:\n%s", re, out)
		}
	}
	if rev != "" && !regexp.MustCompile(`(?m)^revision\s+`+rev+`( \(modified\))?$`).MatchString(out) {
		t.Errorf("tricenter version does not name commit %s:\n%s", rev, out)
	}
	if rev == "" && !regexp.MustCompile(`(?m)^revision\s+unknown$`).MatchString(out) {
		t.Errorf("outside a Git checkout the revision is unknown:\n%s", out)
	}

	short := "unknown"
	if rev != "" {
		short = rev[:12]
	}
	if out := run("--version"); !strings.HasPrefix(out, "tricenter version "+want+" (revision "+short) ||
		!strings.Contains(out, runtime.Version()) {
		t.Errorf("tricenter --version: %q", out)
	}

	var i version.Info
	if err := json.Unmarshal([]byte(run("version", "-o", "json")), &i); err != nil {
		t.Fatal(err)
	}
	if i.Version != want || i.Revision != rev || i.GoVersion != runtime.Version() {
		t.Errorf("tricenter version -o json: %+v", i)
	}
}

// TestVersionCommand: in-process, the command prints internal/version's
// value (the test binary is not stamped) in both forms.
func TestVersionCommand(t *testing.T) {
	v := version.Get()
	out, errs, code := runCLI(t, "version", "-o", "json")
	var i version.Info
	if code != 0 || json.Unmarshal([]byte(out), &i) != nil || i != v {
		t.Fatalf("version -o json (exit %d): %q %q, want %+v", code, out, errs, v)
	}
	out, _, code = runCLI(t, "--version")
	if code != 0 || out != "tricenter version "+v.String()+"\n" {
		t.Fatalf("--version (exit %d): %q", code, out)
	}
	if _, errs, code := runCLI(t, "version", "-o", "yaml"); code == 0 || !strings.Contains(errs, "use table or json") {
		t.Fatalf("version -o yaml (exit %d): %q", code, errs)
	}
}
