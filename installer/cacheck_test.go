package installer

import (
	"errors"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// TestParseCAQuery reads the query's output: certificates by their DER
// fingerprint, the service-account public key by its key's.
func TestParseCAQuery(t *testing.T) {
	s := &pki.Store{Dir: t.TempDir()}
	ca, err := s.CA(pki.EtcdCA, "test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CA(pki.KubernetesCA, "other")
	if err != nil {
		t.Fatal(err)
	}
	pub := []byte("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7mzdtyfz8TBqiu2mwwlYCUlvpbE6\n1w4XkOHhy4gJQ5WxwSAx8q6jx6zJgSfs7hcwpHI4tgMxt6mR9f3G2a7k2A==\n-----END PUBLIC KEY-----\n")
	out := "==> /etc/etcd/pki/ca.crt\n" + string(ca.CertPEM) +
		"==> /etc/kubernetes/kubelet/ca.crt\n" + string(other.CertPEM) +
		"==> /etc/kubernetes/pki/sa.pub\n" + string(pub)
	fps, err := parseCAQuery(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(fps) != 3 {
		t.Fatalf("got %d files, want 3: %v", len(fps), fps)
	}
	if fps["/etc/etcd/pki/ca.crt"] != pki.Fingerprint(ca.Cert) || fps["/etc/kubernetes/kubelet/ca.crt"] != pki.Fingerprint(other.Cert) {
		t.Errorf("certificate fingerprints: %v", fps)
	}
	if want, _ := pki.PublicKeyFingerprint(pub); fps["/etc/kubernetes/pki/sa.pub"] != want {
		t.Errorf("sa.pub fingerprint %s, want %s", fps["/etc/kubernetes/pki/sa.pub"], want)
	}
	if _, err := parseCAQuery("==> /etc/etcd/pki/ca.crt\nnot a certificate\n"); err == nil || !strings.Contains(err.Error(), "/etc/etcd/pki/ca.crt") {
		t.Errorf("garbage: %v, want an error naming the file", err)
	}
	if fps, err := parseCAQuery(""); err != nil || len(fps) != 0 {
		t.Errorf("a server without any: %v, %v", fps, err)
	}
	if !strings.Contains(caQuery(), "/etc/etcd/pki/ca.crt") || !strings.Contains(caQuery(), "sa.pub") {
		t.Errorf("the query misses files: %s", caQuery())
	}
}

func TestCompareCAs(t *testing.T) {
	state := map[string]string{pki.EtcdCA: "aaaa", pki.KubernetesCA: "bbbb"}
	same := []caSeen{
		{"s1", "/etc/etcd/pki/ca.crt", pki.EtcdCA, "aaaa"},
		{"cp1", "/etc/kubernetes/pki/ca.crt", pki.KubernetesCA, "bbbb"},
	}
	if err := CompareCAs(state, same); err != nil {
		t.Errorf("the state's own CAs: %v", err)
	}
	if err := CompareCAs(nil, nil); err != nil {
		t.Errorf("a first install (nothing anywhere): %v", err)
	}
	if err := CompareCAs(state, nil); err != nil {
		t.Errorf("servers without CAs yet: %v", err)
	}
	for _, tc := range []struct {
		name  string
		state map[string]string
		seen  []caSeen
		want  []string
	}{
		{"fresh state, running cluster", map[string]string{}, same,
			[]string{"etcd CA: the state's is none (this state has no etcd CA); the servers hold sha256:aaaa on s1:/etc/etcd/pki/ca.crt",
				"Kubernetes CA: the state's is none", "tricenter state restore", "terraform import", "Nothing was written"}},
		{"another cluster's state", map[string]string{pki.EtcdCA: "ffff", pki.KubernetesCA: "bbbb"},
			append(same, caSeen{"s2", "/etc/etcd/pki/ca.crt", pki.EtcdCA, "aaaa"}, caSeen{"cp1", "/etc/kubernetes/pki/etcd/ca.crt", pki.EtcdCA, "aaaa"}),
			[]string{"etcd CA: the state's is sha256:ffff; the servers hold sha256:aaaa on cp1:/etc/kubernetes/pki/etcd/ca.crt, s1:/etc/etcd/pki/ca.crt, s2:/etc/etcd/pki/ca.crt"}},
		{"servers disagree among themselves", state,
			[]caSeen{{"s1", "/etc/etcd/pki/ca.crt", pki.EtcdCA, "aaaa"}, {"s2", "/etc/etcd/pki/ca.crt", pki.EtcdCA, "cccc"}},
			[]string{"sha256:cccc on s2"}},
		{"a service-account key the state lacks", state,
			[]caSeen{{"cp1", "/etc/kubernetes/pki/sa.pub", pki.ServiceAccountAuthority, "dddd"}},
			[]string{"service-account key: the state's is none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CompareCAs(tc.state, tc.seen)
			if !errors.Is(err, ErrCAMismatch) {
				t.Fatalf("%v, want ErrCAMismatch", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "sha256:aaaa on s1") && strings.Contains(tc.name, "disagree") {
				t.Errorf("a server holding the state's CA is named as a mismatch: %v", err)
			}
		})
	}
}
