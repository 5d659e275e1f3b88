package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
)

// TestResetDryRunOverSSH: reset --dry-run runs the removal phases against
// real sshd hosts with the mutation gate recording, prints the per-host
// plan and the Node drains it would do, and changes nothing; with -f - and
// no terminal, a reset that would remove something stops at the question.
func TestResetDryRunOverSSH(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: sshBlock, Hosts: 4, Jump: true})
	dir := t.TempDir()
	inv := filepath.Join(dir, "deploy.yaml")
	if err := l.WriteInventory(inv, sshtest.ClusterOptions{User: "deploy", PinHostKeys: true}); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()

	out, errs, code := runCLI(t, "reset", "-f", inv, "--state-dir", stateDir, "--dry-run")
	if code != 0 || !strings.Contains(out, "Nothing to reset") {
		t.Fatalf("reset --dry-run of clean hosts (exit %d):\n%s\n%s", code, out, errs)
	}

	// node04 is a worker (sshtest: the first host of each center runs
	// etcd and the control plane) with a kubelet unit left behind.
	worker := l.Hosts[3]
	unit := worker.Path(node.KubeletUnitFile)
	if err := os.WriteFile(unit, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errs, code = runCLI(t, "reset", "-f", inv, "--state-dir", stateDir, "--dry-run")
	t.Logf("reset --dry-run:\n%s", out)
	if code != 0 || !strings.Contains(out, "changes on 1 hosts:\n  "+worker.Name+":\n    would run stop and remove kubelet, kube-proxy") ||
		!strings.HasSuffix(out, "dry run: nothing was removed\n") || strings.Contains(out, "[y/N]") {
		t.Fatalf("reset --dry-run (exit %d):\n%s\n%s", code, out, errs)
	}

	out, errs, code = runCLI(t, "reset", "-f", inv, "--state-dir", stateDir, "--servers", worker.Name, "--dry-run")
	if code != 0 || !strings.Contains(out, "through the Kubernetes API:\n  would drain and delete Node "+worker.Name+"\n") ||
		!strings.Contains(out, "    would run stop and remove kubelet") {
		t.Fatalf("reset --servers --dry-run (exit %d): there is no API to drain through, so only a plan passes:\n%s\n%s", code, out, errs)
	}

	inventory, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code = runCLIIn(t, strings.NewReader(string(inventory)), "reset", "-f", "-", "--state-dir", stateDir, "--only", "nodes")
	if code != 1 || !strings.Contains(out, "would run stop and remove kubelet") ||
		!strings.Contains(errs, "stdin held the inventory (-f -) and there is no terminal to confirm on: pass --yes") {
		t.Fatalf("reset -f - without a terminal (exit %d):\n%s\n%s", code, out, errs)
	}

	if _, err := os.Stat(unit); err != nil {
		t.Fatalf("a dry run or an unconfirmed reset removed %s: %v", node.KubeletUnitFile, err)
	}
}
