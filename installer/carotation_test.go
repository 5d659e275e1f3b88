package installer

import (
	"errors"
	"slices"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// guard runs the CA guard's decision (checkHostCAs without SSH) on what
// one server holds: the query's output for its files.
func guard(t *testing.T, s *pki.Store, files map[string][]byte) error {
	t.Helper()
	state, err := s.Fingerprints()
	if err != nil {
		t.Fatal(err)
	}
	known, err := s.KnownCAs()
	if err != nil {
		t.Fatal(err)
	}
	state = rotationState(state, known)
	out := ""
	for path, b := range files {
		out += "==> " + path + "\n" + string(b)
	}
	fps, err := parseCAQuery(out)
	if err != nil {
		t.Fatal(err)
	}
	bundles := parseCABundles(out)
	var seen []caSeen
	for _, f := range HostCAFiles {
		if fp, ok := fps[f.Path]; ok {
			seen = append(seen, caSeen{Host: "cp1", Path: f.Path, Authority: f.Authority,
				Fingerprint: acceptBundle(state, known, f.Authority, fp, bundles[f.Path])})
		}
	}
	return CompareCAs(state, seen)
}

// TestCAGuardDuringRotation: the guard accepts a server's CA file holding
// the old and the next CA during a rotation and after it, the next alone
// during the finish phase, and still refuses a foreign CA, alone or after
// the state's own.
func TestCAGuardDuringRotation(t *testing.T) {
	s := pki.NewMemStore()
	old, err := s.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewMemStore().CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(what string, b []byte) {
		t.Helper()
		if err := guard(t, s, map[string][]byte{controlplane.CACert: b}); err != nil {
			t.Errorf("%s: refused: %v", what, err)
		}
	}
	refused := func(what string, b []byte) {
		t.Helper()
		if err := guard(t, s, map[string][]byte{controlplane.CACert: b}); !errors.Is(err, ErrCAMismatch) {
			t.Errorf("%s: %v, want ErrCAMismatch", what, err)
		}
	}
	ok("no rotation, the state's CA", old.CertPEM)
	refused("no rotation, a foreign CA", foreign.CertPEM)
	refused("no rotation, the state's CA then a foreign one", pki.Bundle(old.CertPEM, foreign.CertPEM))
	if _, err := s.StartRotation(pki.KubernetesCA); err != nil {
		t.Fatal(err)
	}
	trust, err := s.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	ok("trust, old and next", trust.CertPEM)
	ok("trust, old only (before the phase's apply)", old.CertPEM)
	refused("trust, old and a foreign one", pki.Bundle(old.CertPEM, foreign.CertPEM))
	for range 2 {
		if _, err := s.AdvanceRotation(pki.KubernetesCA); err != nil {
			t.Fatal(err)
		}
	}
	finish, err := s.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	ok("finish, next only", finish.CertPEM)
	ok("finish, old and next", trust.CertPEM)
	if _, err := s.AdvanceRotation(pki.KubernetesCA); err != nil {
		t.Fatal(err)
	}
	ok("after, the new CA", finish.CertPEM)
	ok("after, old and new (a server that missed the finish phase)", trust.CertPEM)
	refused("after, the old CA only", old.CertPEM)
	refused("after, a foreign CA", foreign.CertPEM)
}

// TestCAGuardDuringPeerSplit: while the etcd peer CA is split, the state
// has no peer ca.crt yet; a server's peer-ca.crt holding the etcd CA and
// the new peer CA is the rotation's.
func TestCAGuardDuringPeerSplit(t *testing.T) {
	s := pki.NewMemStore()
	etcdCA, err := s.CA(pki.EtcdCA, "tricenter etcd CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Leaf(etcdCA, pki.EtcdCA, "peer-e1", pki.Request{CommonName: "e1", Usage: pki.Server | pki.Client}); err != nil {
		t.Fatal(err)
	}
	r, err := s.StartRotation(pki.EtcdPeerCA)
	if err != nil || !r.Split {
		t.Fatalf("split: %+v %v", r, err)
	}
	e, err := s.CA(pki.EtcdPeerCA, "tricenter etcd peer CA")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"/etc/etcd/pki/peer-ca.crt": e.CertPEM, "/etc/etcd/pki/ca.crt": etcdCA.CertPEM}
	if err := guard(t, s, files); err != nil {
		t.Errorf("trust phase of the split: %v", err)
	}
	foreign, _ := pki.NewMemStore().CA(pki.EtcdPeerCA, "x")
	files["/etc/etcd/pki/peer-ca.crt"] = foreign.CertPEM
	if err := guard(t, s, files); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("a foreign peer CA during the split: %v", err)
	}
}

func TestCARotationComponents(t *testing.T) {
	for a, want := range map[string][]Component{
		pki.KubernetesCA: {BGP, ControlPlane, Nodes, Gates},
		pki.FrontProxyCA: {ControlPlane, Gates},
		pki.EtcdCA:       {Etcd, ControlPlane, Gates},
		pki.EtcdPeerCA:   {Etcd, Gates},
	} {
		got, err := caRotationComponents(a)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v, want %v", a, got, err, want)
		}
	}
	if _, err := caRotationComponents(pki.ServiceAccountAuthority); err == nil {
		t.Error("the service-account key is rotatable here")
	}
}
