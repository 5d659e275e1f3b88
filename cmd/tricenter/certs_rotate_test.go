package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// TestRotateCAFlags: an authority that cannot be rotated, or none, is
// refused before anything is read.
func TestRotateCAFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--authority", "service-account"}, `--authority "service-account": use one of kubernetes, front-proxy, etcd, etcd-peer`},
		{nil, `required flag(s) "authority" not set`},
		{[]string{"--authority", "kubernetes", "-o", "yaml"}, "yaml"},
	} {
		args := append([]string{"certs", "rotate-ca", "-f", secretsInventory, "--state-dir", t.TempDir(), "--dry-run"}, tc.args...)
		out, errs, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error containing %q (stdout %q)", tc.args, code, errs, tc.want, out)
		}
	}
}

// TestRotateCADryRun: the plan lists the three phases with the servers
// each applies to, and changes nothing in the state.
func TestRotateCADryRun(t *testing.T) {
	stateDir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(stateDir, "lab", "pki")}
	if _, err := store.CA(pki.KubernetesCA, pki.KubernetesCACommonName); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, "certs", "rotate-ca", "-f", secretsInventory, "--state-dir", stateDir, "--authority", "kubernetes", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"A new rotation of the kubernetes CA", "trust", "reissue", "finish", "control-plane,nodes,gates", "next", "pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan lacks %q:\n%s", want, out)
		}
	}
	if r, err := store.Rotation(pki.KubernetesCA); err != nil || r != nil {
		t.Errorf("a dry run started a rotation: %+v %v", r, err)
	}
	_, errs, code = runCLI(t, "certs", "rotate-ca", "-f", secretsInventory, "--state-dir", stateDir, "--authority", "front-proxy", "--dry-run")
	if code == 0 || !strings.Contains(errs, "the state has no front-proxy CA: run tricenter apply first") {
		t.Errorf("front-proxy without its CA: exit %d, %s", code, errs)
	}
}
