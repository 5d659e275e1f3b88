package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
)

// The CLI's sshd labs use 198.18.24.0/22 (see installer/sshtest).
var sshBlock = netip.MustParsePrefix("198.18.24.0/22")

// TestSSHCheckAndExec runs ssh-check and exec against real sshd hosts that
// are reachable only through the jump host.
func TestSSHCheckAndExec(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: sshBlock, Hosts: 4, Jump: true})
	dir := t.TempDir()
	inv := filepath.Join(dir, "deploy.yaml")
	if err := l.WriteInventory(inv, sshtest.ClusterOptions{User: "deploy", PinHostKeys: true}); err != nil {
		t.Fatal(err)
	}

	t.Run("ssh-check table", func(t *testing.T) {
		out, errOut, code := runCLI(t, "ssh-check", "-f", inv)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, h := range l.Hosts {
			re := regexp.MustCompile(h.Name + `\s+dc\d\s+` + regexp.QuoteMeta(h.Addr.String()) + `:22\s+dc\d-jump\s+yes\s+` +
				regexp.QuoteMeta(h.Fingerprint) + `\s+ok\s+Debian`)
			if !re.MatchString(out) {
				t.Errorf("no row for %s:\n%s", h.Name, out)
			}
		}
		if !strings.Contains(out, "4 of 4 hosts OK") {
			t.Errorf("summary missing:\n%s", out)
		}
	})

	t.Run("ssh-check json reports sudo asking for a password", func(t *testing.T) {
		pw := filepath.Join(dir, "pwuser.yaml")
		if err := l.WriteInventory(pw, sshtest.ClusterOptions{User: "pwuser"}); err != nil {
			t.Fatal(err)
		}
		out, _, code := runCLI(t, "ssh-check", "-f", pw, "--center", "dc1", "-o", "json")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		var rows []installer.HostCheck
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(rows) != 2 {
			t.Fatalf("%d rows for dc1, want 2", len(rows))
		}
		for _, r := range rows {
			if !r.Reachable || r.Sudo != "password" || !strings.Contains(r.Error, "NOPASSWD") || r.CPUs < 1 || r.Kernel == "" {
				t.Errorf("row %+v", r)
			}
		}
	})

	t.Run("ssh-check names a host key mismatch", func(t *testing.T) {
		b, _ := os.ReadFile(inv)
		bad := filepath.Join(dir, "mismatch.yaml")
		os.WriteFile(bad, []byte(strings.Replace(string(b), l.Hosts[0].Fingerprint, l.Hosts[1].Fingerprint, 1)), 0o644)
		// A missing extra known_hosts file is not an error.
		out, _, code := runCLI(t, "ssh-check", "-f", bad, "--known-hosts", filepath.Join(dir, "none"))
		if code != 1 || !strings.Contains(out, "3 of 4 hosts OK") ||
			!strings.Contains(out, "node01: HOST KEY MISMATCH for node01 ("+l.Hosts[0].Addr.String()+":22): expected "+l.Hosts[1].Fingerprint) {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})

	t.Run("exec prefixes output and sums up exit codes", func(t *testing.T) {
		out, errOut, code := runCLI(t, "exec", "-f", inv, "--sudo", "--", "id -un; hostname -I | tr -d ' '")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, h := range l.Hosts {
			if !strings.Contains(out, h.Name+" | root\n") || !strings.Contains(out, h.Name+" | "+h.Addr.String()+"\n") {
				t.Errorf("no prefixed output for %s:\n%s", h.Name, out)
			}
		}
		if !strings.Contains(out, "exit 0      4 hosts: node01, node02, node03, node04") {
			t.Errorf("summary:\n%s", out)
		}
		out, _, code = runCLI(t, "exec", "-f", inv, "--center", "dc2", "--", `[ "$(hostname -I | tr -d ' ')" = `+l.Hosts[1].Addr.String()+` ] && exit 3; echo fine`)
		if code != 1 || !strings.Contains(out, "exit 3      1 host: node02") || !strings.Contains(out, "exit 0      1 host: node05") && len(l.Hosts) > 4 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if !strings.Contains(out, "exit 3      1 host: node02") {
			t.Fatalf("summary:\n%s", out)
		}
	})

	t.Run("exec dry run", func(t *testing.T) {
		out, _, code := runCLI(t, "exec", "-f", inv, "--role", "etcd", "--dry-run", "--", "rm -rf /srv/data")
		if code != 0 || strings.Count(out, "would run rm -rf /srv/data") != 3 || !strings.Contains(out, "dry run     3 hosts") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
}
