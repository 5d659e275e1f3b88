package installer

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestCatFilesThroughShell runs the read command in a real shell over
// files with and without a trailing newline, a missing one and one that
// looks like a marker-free PEM: each comes back byte for byte.
func TestCatFilesThroughShell(t *testing.T) {
	dir := t.TempDir()
	contents := map[string][]byte{
		filepath.Join(dir, "a.crt"): []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		filepath.Join(dir, "b.key"): []byte("no trailing newline"),
		filepath.Join(dir, "c"):     []byte("\n\ntwo blank lines first\n\n"),
	}
	for p, b := range contents {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")
	paths := []string{filepath.Join(dir, "a.crt"), missing, filepath.Join(dir, "b.key"), filepath.Join(dir, "c")}
	out, err := exec.Command("sh", "-c", catFiles(paths)).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := splitCatFiles(string(out))
	if _, ok := got[missing]; ok {
		t.Errorf("a missing file came back: %q", got[missing])
	}
	for p, want := range contents {
		if !bytes.Equal(got[p], want) {
			t.Errorf("%s: got %q, want %q", filepath.Base(p), got[p], want)
		}
	}
}

// TestKubeconfigClient reads the client certificate back from the kubelet
// kubeconfig the node phases render.
func TestKubeconfigClient(t *testing.T) {
	s := pki.NewMemStore()
	ca, err := s.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	client, _, err := s.EnsureKubelet("w1", []net.IP{net.ParseIP("198.18.10.11")})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := node.RenderKubeletKubeconfig("lab", "https://198.19.120.10:6443", ca.CertPEM, client, "w1")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := kubeconfigClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert, client.CertPEM) || !bytes.Equal(key, client.KeyPEM) {
		t.Fatal("the kubeconfig's client certificate or key differs from the one rendered")
	}
	for _, bad := range []string{"", "apiVersion: v1\nkind: Config\n", "{"} {
		if _, _, err := kubeconfigClient([]byte(bad)); err == nil {
			t.Errorf("kubeconfig %q: no error", bad)
		}
	}
}

// TestObserveNodeAndAdoptUnknownServer: a server the inventory lacks is
// reported, never asked.
func TestObserveNodeAndAdoptUnknownServer(t *testing.T) {
	c := &inventory.Cluster{}
	c.Metadata.Name = "x"
	m, err := state.NewMem(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{cfg: Config{Cluster: c, Store: m}}
	r := e.ObserveNode(context.Background(), "nope")
	if r.Reached || len(r.Problems) != 1 || r.Problems[0] != "server nope is not in the inventory" {
		t.Fatalf("ObserveNode(nope) = %+v", r)
	}
	if _, err := e.AdoptNodeCertificates(context.Background(), "nope"); err == nil {
		t.Fatal("AdoptNodeCertificates(nope): no error")
	}
}
