package controlplane

import (
	"crypto/tls"
	"testing"

	"k8s.io/client-go/util/cert"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// kube-controller-manager's CSR signer takes exactly one certificate, the
// one of its key: ca-signer.crt is that certificate in every phase of a
// Kubernetes CA rotation, while ca.crt carries the trust bundle.
func TestSignerCertIsOneCertificateOfTheKey(t *testing.T) {
	s := &pki.Store{Dir: t.TempDir()}
	ensurePKI(t, s, []inventory.Member{testServer})
	if _, err := s.StartRotation(pki.KubernetesCA); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"trust", "reissue", "finish", "done"} {
		cp := ensurePKI(t, s, []inventory.Member{testServer})
		files, err := hostFiles(testSettings, cp, testKeyring(t), testServer)
		if err != nil {
			t.Fatal(err)
		}
		byPath := map[string][]byte{}
		for _, f := range files {
			byPath[f.path] = f.data
		}
		signer, err := cert.ParseCertsPEM(byPath[CASignerCert])
		if err != nil || len(signer) != 1 {
			t.Fatalf("%s: %s holds %d certificates (%v), want 1", phase, CASignerCert, len(signer), err)
		}
		if _, err := tls.X509KeyPair(byPath[CASignerCert], byPath[CAKey]); err != nil {
			t.Errorf("%s: %s does not match %s: %v", phase, CASignerCert, CAKey, err)
		}
		bundle, err := cert.ParseCertsPEM(byPath[CACert])
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		if phase == "finish" || phase == "done" {
			want = 1
		}
		if len(bundle) != want {
			t.Errorf("%s: %s holds %d certificates, want %d", phase, CACert, len(bundle), want)
		}
		if phase != "done" {
			if _, err := s.AdvanceRotation(pki.KubernetesCA); err != nil {
				t.Fatal(err)
			}
		}
	}
}
