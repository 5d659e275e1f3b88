// Package testenv decides, in one place, what a test does when a real peer
// (ipmi_sim, sshd, FRR, systemd-nspawn, ...) or a privilege (root) it needs
// is missing on this machine.
//
// Outside CI the test is skipped with a message naming what is missing and
// how to get it (make deps, run as root). When the environment variable CI
// is true (.ci/run exports CI=true) the test fails with the same message
// instead: a CI run must never pass by skipping the tests that talk to real
// peers.
//
// Every helper ends the test (t.Skip or t.Fatal) when something is missing
// and returns normally otherwise, so callers write
//
//	testenv.RequireRoot(t, "ipmi_sim listens on UDP port 623")
//	testenv.RequireBinary(t, "ipmi_sim", "sdrcomp", "/usr/lib/frr/bgpd")
//	testenv.Need(t, ipmisim.Available())
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// EnvCI is the environment variable that turns a missing peer into a
// failure: CI=true (any value strconv.ParseBool accepts as true).
const EnvCI = "CI"

// CI reports whether the tests run under CI (see EnvCI).
func CI() bool {
	return isCI(os.Getenv(EnvCI))
}

func isCI(v string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	return err == nil && b
}

// Require ends the test when ok is false: what names what is missing and
// how to get it, e.g. "ipmi_sim (Debian package openipmi): run make deps".
func Require(t testing.TB, what string, ok bool) {
	t.Helper()
	if !ok {
		missing(t, what)
	}
}

// Need ends the test when err (typically from a package's Available
// function, which names what is missing and how to get it) is not nil.
func Need(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		missing(t, err.Error())
	}
}

// RequireRoot ends the test unless it runs as root; why says what needs it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, rootMessage(why))
	}
}

func rootMessage(why string) string {
	return fmt.Sprintf("root (%s): run the tests as root", why)
}

// RequireBinary ends the test unless every named program exists and is
// executable. A name without a slash is looked up in PATH; a path such as
// /usr/lib/frr/bgpd or /usr/sbin/sshd is checked as it is. The message
// names every missing program and the Debian package that has it.
func RequireBinary(t testing.TB, names ...string) {
	t.Helper()
	if m := missingBinaries(names); len(m) > 0 {
		missing(t, binaryMessage(m))
	}
}

// RequireFile ends the test unless every path exists (a file or a
// directory); hint says how to get them, e.g. "run make artifacts".
func RequireFile(t testing.TB, hint string, paths ...string) {
	t.Helper()
	var m []string
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			m = append(m, p)
		}
	}
	if len(m) > 0 {
		missing(t, strings.Join(m, ", ")+": "+hint)
	}
}

func missingBinaries(names []string) []string {
	var m []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			m = append(m, n)
		}
	}
	return m
}

// packages maps a program to the Debian package (hack/packages.txt) that
// installs it.
var packages = map[string]string{
	"ipmi_sim": "openipmi", "sdrcomp": "openipmi",
	"ipmitool": "ipmitool",
	"sshd":     "openssh-server", "sftp-server": "openssh-sftp-server",
	"ssh": "openssh-client", "ssh-agent": "openssh-client", "ssh-keygen": "openssh-client",
	"sudo": "sudo", "ip": "iproute2", "openssl": "openssl", "ping": "iputils-ping",
	"bgpd": "frr", "zebra": "frr", "vtysh": "frr",
	"systemd-nspawn": "systemd-container", "machinectl": "systemd-container",
	"debootstrap": "debootstrap", "sha256sum": "coreutils",
	"nsenter": "util-linux", "unshare": "util-linux", "ansible-playbook": "ansible-core",
	"pgrep": "procps",
}

// binaryMessage names the missing programs with their packages.
func binaryMessage(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		if p, ok := packages[filepath.Base(n)]; ok {
			parts[i] = fmt.Sprintf("%s (Debian package %s)", n, p)
		} else {
			parts[i] = n
		}
	}
	return strings.Join(parts, ", ") + ": run make deps"
}

// verdict is the decision: under CI a missing peer fails the test,
// otherwise it skips it; msg is what the test reports either way.
func verdict(ci bool, what string) (fail bool, msg string) {
	if ci {
		return true, fmt.Sprintf("%s=true, so a missing peer fails the run instead of skipping the test: missing: %s", EnvCI, what)
	}
	return false, fmt.Sprintf("missing: %s (skipped; under %s=true this fails)", what, EnvCI)
}

func missing(t testing.TB, what string) {
	t.Helper()
	fail, msg := verdict(CI(), what)
	if fail {
		t.Fatal(msg)
		return
	}
	t.Skip(msg)
}

// Terraform makes the terraform binary available to
// terraform-plugin-testing without a download: TF_ACC_TERRAFORM_PATH when
// set (it must name a file), else terraform from PATH, which it then sets.
// Without either the test ends (fails under CI=true).
func Terraform(t testing.TB) {
	t.Helper()
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		RequireFile(t, "TF_ACC_TERRAFORM_PATH names no file: install Terraform >= 1.11", p)
		return
	}
	p, err := exec.LookPath("terraform")
	Require(t, "terraform on PATH (Terraform >= 1.11; /usr/local/bin/terraform on the lab machines) or TF_ACC_TERRAFORM_PATH", err == nil)
	t.Setenv("TF_ACC_TERRAFORM_PATH", p)
}
