package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// otherCA is a self-signed CA certificate (PEM) that signed nothing the
// test server presents.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestCheckerFollowsCAFileChanges: a CA rotation rewrites the check's CA
// file (the old and the new CA, then the new one only); the checker
// trusts what the file holds from the next probe on, without a restart.
func TestCheckerFollowsCAFileChanges(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	served := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	other := otherCA(t)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(ca, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(other)
	c, err := newChecker("api", 1, bgp.Check{URL: srv.URL, CAFile: ca, Timeout: bgp.Duration{Duration: time.Second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.probe(ctx); err == nil {
		t.Fatal("the server's certificate verified against another CA")
	}
	write(append(append([]byte{}, other...), served...)) // the bundle
	if err := c.probe(ctx); err != nil {
		t.Fatalf("probe with the bundle: %v", err)
	}
	write(served) // the new CA only
	if err := c.probe(ctx); err != nil {
		t.Fatalf("probe with the new CA only: %v", err)
	}
	write(other)
	if err := c.probe(ctx); err == nil {
		t.Error("the checker still trusts a CA its file no longer holds")
	}
	if err := os.Remove(ca); err != nil {
		t.Fatal(err)
	}
	if err := c.probe(ctx); err == nil {
		t.Error("the checker trusts the server after its CA file went (it keeps the other CA it last read)")
	}
}
