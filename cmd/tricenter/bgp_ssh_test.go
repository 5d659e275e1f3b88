package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
)

// bgp install --dry-run and bgp status go through the installer engine to
// real sshd hosts behind a jump host. The hosts have no systemd, so the
// install is a dry run; status finds no agent and fails the gate.
func TestBGPInstallDryRunAndStatusOverSSH(t *testing.T) {
	t.Setenv("TRICENTER_STATE_DIR", t.TempDir())
	l := sshtest.New(t, sshtest.Options{Block: sshBlock, Hosts: 3, Jump: true})
	dir := t.TempDir()
	inv := filepath.Join(dir, "lab.yaml")
	if err := l.WriteInventory(inv, sshtest.ClusterOptions{User: "deploy", PinHostKeys: true}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tricenter-bgp")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runCLI(t, "bgp", "install", "-f", inv, "--dry-run", "--binary", bin)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("bgp install --dry-run:\n%s", out)
	for _, h := range l.Hosts {
		for _, want := range []string{
			h.Name + ": would upload /usr/local/bin/tricenter-bgp",
			h.Name + ": would write /etc/tricenter/bgp/agent.yaml",
			h.Name + ": would write /etc/systemd/system/tricenter-bgp.service",
			h.Name + ": would restart tricenter-bgp.service",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run lacks %q:\n%s", want, out)
			}
		}
	}
	if _, err := os.Stat("/etc/tricenter/bgp/agent.yaml"); err == nil {
		t.Error("the dry run wrote a configuration file")
	}

	out, errOut, code = runCLI(t, "bgp", "status", "-f", inv)
	if code != 1 || !strings.Contains(out, "BGP gate FAILED") {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("bgp status:\n%s", out)
	for _, h := range l.Hosts {
		if !strings.Contains(out, h.Name) || !strings.Contains(out, "no status:") {
			t.Errorf("status lacks %s's failure:\n%s", h.Name, out)
		}
	}
}
