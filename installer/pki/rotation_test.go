package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
)

// fps are the fingerprints of every certificate of a PEM bundle.
func fps(t *testing.T, b []byte) []string {
	t.Helper()
	cs, err := ParseCerts(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, Fingerprint(c))
	}
	return out
}

func TestCARotationPhases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		if _, err := s.StartRotation(KubernetesCA); err == nil || !errors.Is(err, ErrNotFound) {
			t.Fatalf("rotating before the CA exists: %v", err)
		}
		old, err := s.CA(KubernetesCA, KubernetesCACommonName)
		if err != nil {
			t.Fatal(err)
		}
		oldFP := Fingerprint(old.Cert)
		leafReq := Request{CommonName: "x", Usage: Client}
		leaf, _, err := s.Leaf(old, KubernetesCA, "x", leafReq)
		if err != nil {
			t.Fatal(err)
		}
		// No rotation: the CA is the stored one, byte for byte.
		same, err := s.CA(KubernetesCA, KubernetesCACommonName)
		if err != nil || !bytes.Equal(same.CertPEM, old.CertPEM) || !bytes.Equal(same.KeyPEM, old.KeyPEM) {
			t.Fatalf("without a rotation CA changed: %v", err)
		}
		r, err := s.StartRotation(KubernetesCA)
		if err != nil {
			t.Fatal(err)
		}
		if r.Phase != RotationTrust || r.Old != oldFP || r.Next == "" || r.Next == oldFP || r.Split {
			t.Fatalf("started %+v", r)
		}
		if again, err := s.StartRotation(KubernetesCA); err != nil || again.Next != r.Next {
			t.Fatalf("starting again: %+v, %v", again, err)
		}
		if _, err := s.StartRotation(FrontProxyCA); err == nil || !errors.Is(err, ErrRotationInProgress) {
			t.Fatalf("a second rotation at once: %v", err)
		}
		check := func(phase RotationPhase, signer string, bundle []string, reissued bool) {
			t.Helper()
			for _, get := range []func() (*KeyPair, error){
				func() (*KeyPair, error) { return s.CA(KubernetesCA, KubernetesCACommonName) },
				func() (*KeyPair, error) { return s.LoadCA(KubernetesCA) },
			} {
				ca, err := get()
				if err != nil {
					t.Fatalf("%s: %v", phase, err)
				}
				if got := Fingerprint(ca.Cert); got != signer {
					t.Errorf("%s: signing CA %s, want %s", phase, got[:8], signer[:8])
				}
				if got := fps(t, ca.CertPEM); !slices.Equal(got, bundle) {
					t.Errorf("%s: bundle %d certificates, want %d (%v)", phase, len(got), len(bundle), got)
				}
				if !publicKeyEqual(ca.Cert.PublicKey, ca.Key.Public()) {
					t.Errorf("%s: the key is not the signing CA's", phase)
				}
				// As kube-controller-manager loads its signing files.
				if _, err := tls.X509KeyPair(ca.CertPEM, ca.KeyPEM); err != nil {
					t.Errorf("%s: the bundle and the signing key do not load as a key pair: %v", phase, err)
				}
			}
			ca, _ := s.CA(KubernetesCA, KubernetesCACommonName)
			kp, changed, err := s.Leaf(ca, KubernetesCA, "x", leafReq)
			if err != nil {
				t.Fatal(err)
			}
			if changed != reissued {
				t.Errorf("%s: leaf reissued %v, want %v", phase, changed, reissued)
			}
			if kp.Cert.CheckSignatureFrom(ca.Cert) != nil {
				t.Errorf("%s: leaf not signed by the signing CA", phase)
			}
			if st, _ := s.Fingerprints(); st[KubernetesCA] != oldFP {
				t.Errorf("%s: the state's fingerprint moved before the end", phase)
			}
		}
		check(RotationTrust, oldFP, []string{oldFP, r.Next}, false)
		if p, err := s.AdvanceRotation(KubernetesCA); err != nil || p != RotationReissue {
			t.Fatalf("advance: %v %v", p, err)
		}
		// The signing CA first (a file next to the signing key must
		// start with its certificate).
		check(RotationReissue, r.Next, []string{r.Next, oldFP}, true)
		// Once reissued, kept.
		ca, _ := s.CA(KubernetesCA, KubernetesCACommonName)
		if _, changed, _ := s.Leaf(ca, KubernetesCA, "x", leafReq); changed {
			t.Error("reissue: the leaf is reissued again")
		}
		if err := s.MarkRotationApplied(KubernetesCA); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Rotation(KubernetesCA); !got.Applied {
			t.Error("applied mark not kept")
		}
		if p, err := s.AdvanceRotation(KubernetesCA); err != nil || p != RotationFinish {
			t.Fatalf("advance: %v %v", p, err)
		}
		if got, _ := s.Rotation(KubernetesCA); got.Applied {
			t.Error("applied mark carried to the next phase")
		}
		check(RotationFinish, r.Next, []string{r.Next}, false)
		known, err := s.KnownCAs()
		if err != nil {
			t.Fatal(err)
		}
		k := known[KubernetesCA]
		if k.Current != oldFP || k.Next != r.Next || !k.Accepts([]string{oldFP, r.Next}) || !k.Accepts([]string{r.Next}) ||
			!k.Accepts([]string{oldFP}) || k.Accepts([]string{fpOf(leaf.Cert)}) || k.Accepts([]string{r.Next, fpOf(leaf.Cert)}) {
			t.Errorf("known during finish: %+v", k)
		}
		finishPEM := mustCA(t, s).CertPEM
		if p, err := s.AdvanceRotation(KubernetesCA); err != nil || p != RotationNone {
			t.Fatalf("complete: %v %v", p, err)
		}
		after := mustCA(t, s)
		if Fingerprint(after.Cert) != r.Next || !bytes.Equal(after.CertPEM, finishPEM) {
			t.Error("after the rotation the CA is not the next one, byte for byte as in the finish phase")
		}
		if st, _ := s.Fingerprints(); st[KubernetesCA] != r.Next {
			t.Error("the state's fingerprint is not the new CA's")
		}
		for _, f := range []string{caNextCrt, caNextKey, rotationFile} {
			if ok, _ := s.exists(KubernetesCA + "/" + f); ok {
				t.Errorf("%s left after the rotation", f)
			}
		}
		if prev := readStored(t, s, KubernetesCA+"/"+CAPreviousFile); !bytes.Equal(prev, old.CertPEM) {
			t.Error("ca-previous.pem is not the old certificate")
		}
		if ok, _ := s.exists(KubernetesCA + "/ca-previous.key"); ok {
			t.Error("the old key is kept")
		}
		known, _ = s.KnownCAs()
		if k := known[KubernetesCA]; !k.Accepts([]string{oldFP, r.Next}) || k.Accepts([]string{oldFP}) {
			t.Errorf("known after: %+v", k)
		}
		if _, err := s.AdvanceRotation(KubernetesCA); !errors.Is(err, ErrNoRotation) {
			t.Errorf("advance without a rotation: %v", err)
		}
		// A new rotation may start now.
		if _, err := s.StartRotation(FrontProxyCA); !errors.Is(err, ErrNotFound) {
			t.Errorf("front-proxy (no CA yet): %v", err)
		}
	})
}

func fpOf(c *x509.Certificate) string { return Fingerprint(c) }

func mustCA(t *testing.T, s *Store) *KeyPair {
	t.Helper()
	ca, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// A completion that stopped after each of its writes is completed by the
// next call.
func TestCARotationCompleteResumes(t *testing.T) {
	for stop := 0; stop < 4; stop++ {
		s := NewMemStore()
		old := mustCA(t, s)
		r, err := s.StartRotation(KubernetesCA)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if _, err := s.AdvanceRotation(KubernetesCA); err != nil {
				t.Fatal(err)
			}
		}
		next, err := s.readPair(KubernetesCA+"/"+caNextCrt, KubernetesCA+"/"+caNextKey)
		if err != nil {
			t.Fatal(err)
		}
		// Replay the steps of completeRotation up to stop.
		rot, _ := s.Rotation(KubernetesCA)
		rot.Completing = true
		if err := s.saveRotation(rot); err != nil {
			t.Fatal(err)
		}
		if stop >= 1 {
			_ = s.files().WriteFile(KubernetesCA+"/"+CAPreviousFile, old.CertPEM, 0o644)
			// The key written, not yet the certificate.
			_ = s.files().WriteFile(KubernetesCA+"/ca.key", next.KeyPEM, 0o600)
		}
		if stop >= 2 {
			_ = s.files().WriteFile(KubernetesCA+"/ca.crt", next.CertPEM, 0o644)
		}
		if stop >= 3 {
			_ = s.remove(KubernetesCA+"/"+caNextKey, KubernetesCA+"/"+caNextCrt)
		}
		// Meanwhile the store serves the next CA.
		if ca := mustCA(t, s); Fingerprint(ca.Cert) != r.Next || len(fps(t, ca.CertPEM)) != 1 {
			t.Fatalf("stop %d: the CA seen mid-completion is not the next one alone", stop)
		}
		if p, err := s.AdvanceRotation(KubernetesCA); err != nil || p != RotationNone {
			t.Fatalf("stop %d: completing: %v %v", stop, p, err)
		}
		if ca := mustCA(t, s); Fingerprint(ca.Cert) != r.Next {
			t.Errorf("stop %d: the CA is not the next one", stop)
		}
		if rr, _ := s.Rotation(KubernetesCA); rr != nil {
			t.Errorf("stop %d: rotation still recorded", stop)
		}
		if prev := readStored(t, s, KubernetesCA+"/"+CAPreviousFile); !bytes.Equal(prev, old.CertPEM) {
			t.Errorf("stop %d: ca-previous.pem is not the old certificate", stop)
		}
	}
}

func TestEtcdPeerCASplitRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		etcdCA := writeOldEtcdStore(t, s, peerTestMembers)
		e0, err := s.EnsureEtcd(peerTestMembers)
		if err != nil || !e0.SharedPeerCA {
			t.Fatalf("old store: shared %v, %v", e0 != nil && e0.SharedPeerCA, err)
		}
		r, err := s.StartRotation(EtcdPeerCA)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Split || r.Old != Fingerprint(etcdCA.Cert) {
			t.Fatalf("split rotation: %+v", r)
		}
		// trust: peer side trusts both, peer certificates unchanged.
		e, err := s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if e.SharedPeerCA || !e.SplittingPeerCA || len(e.Changed) != 0 {
			t.Fatalf("trust: shared %v splitting %v changed %v", e.SharedPeerCA, e.SplittingPeerCA, e.Changed)
		}
		if got := fps(t, e.PeerCA.CertPEM); !slices.Equal(got, []string{r.Old, r.Next}) {
			t.Errorf("trust: peer bundle %v", got)
		}
		if !bytes.Equal(e.CA.CertPEM, etcdCA.CertPEM) {
			t.Error("trust: the etcd (client) CA changed")
		}
		if ok, _ := s.HasCA(EtcdPeerCA); ok {
			t.Error("trust: a peer ca.crt exists before the end")
		}
		// reissue: peer certificates of the new peer CA, CN etcd-peer.
		if _, err := s.AdvanceRotation(EtcdPeerCA); err != nil {
			t.Fatal(err)
		}
		e, err = s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if e.SharedPeerCA || !e.SplittingPeerCA {
			t.Fatalf("reissue: shared %v splitting %v", e.SharedPeerCA, e.SplittingPeerCA)
		}
		for _, m := range peerTestMembers {
			p := e.Peer[m.Name].Cert
			if p.Subject.CommonName != EtcdPeerCN || Fingerprint(e.PeerCA.Cert) != r.Next || p.CheckSignatureFrom(e.PeerCA.Cert) != nil {
				t.Errorf("reissue: peer certificate of %s: CN %q", m.Name, p.Subject.CommonName)
			}
			if !slices.Contains(e.Changed, EtcdPeerCA+"/peer-"+m.Name) {
				t.Errorf("reissue: %s not issued under %s/ (%v)", m.Name, EtcdPeerCA, e.Changed)
			}
		}
		if slices.ContainsFunc(e.Changed, func(c string) bool { return strings.HasPrefix(c, EtcdCA+"/") }) {
			t.Errorf("reissue: etcd CA certificates reissued: %v", e.Changed)
		}
		// finish: the new peer CA only, common-name check on.
		if _, err := s.AdvanceRotation(EtcdPeerCA); err != nil {
			t.Fatal(err)
		}
		fin, err := s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if fin.SharedPeerCA || fin.SplittingPeerCA || len(fin.Changed) != 0 {
			t.Fatalf("finish: shared %v splitting %v changed %v", fin.SharedPeerCA, fin.SplittingPeerCA, fin.Changed)
		}
		if got := fps(t, fin.PeerCA.CertPEM); !slices.Equal(got, []string{r.Next}) {
			t.Errorf("finish: peer bundle %v", got)
		}
		if p, err := s.AdvanceRotation(EtcdPeerCA); err != nil || p != RotationNone {
			t.Fatalf("complete: %v %v", p, err)
		}
		done, err := s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if done.SharedPeerCA || done.SplittingPeerCA || len(done.Changed) != 0 || !bytes.Equal(done.PeerCA.CertPEM, fin.PeerCA.CertPEM) {
			t.Fatalf("after: shared %v splitting %v changed %v", done.SharedPeerCA, done.SplittingPeerCA, done.Changed)
		}
		for _, m := range peerTestMembers {
			if !bytes.Equal(done.Peer[m.Name].CertPEM, fin.Peer[m.Name].CertPEM) {
				t.Errorf("after: peer certificate of %s changed", m.Name)
			}
			if ok, _ := s.exists(EtcdCA + "/peer-" + m.Name + ".crt"); ok {
				t.Errorf("after: the shared CA's peer certificate of %s is left", m.Name)
			}
		}
		if st, _ := s.Fingerprints(); st[EtcdPeerCA] != r.Next || st[EtcdCA] != Fingerprint(etcdCA.Cert) {
			t.Errorf("after: fingerprints %v", st)
		}
		known, _ := s.KnownCAs()
		if k := known[EtcdPeerCA]; !k.Accepts([]string{r.Old, r.Next}) || k.Accepts([]string{r.Old}) {
			t.Errorf("after: known %+v", k)
		}
	})
}
