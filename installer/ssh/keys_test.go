package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	xssh "golang.org/x/crypto/ssh"
)

// TestKeysInMemory: a key file name listed in Options.Keys is served from
// memory (no such file exists); other names are still read from disk.
func TestKeysInMemory(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := xssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	const inline = "(provider ssh.private_key)"
	p, err := NewPool(Options{Keys: map[string][]byte{inline: keyPEM}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.keySigner(inline)
	if err != nil {
		t.Fatalf("in-memory key: %v", err)
	}
	want, _ := xssh.NewSignerFromKey(priv)
	if string(s.PublicKey().Marshal()) != string(want.PublicKey().Marshal()) {
		t.Fatal("the signer is not the in-memory key's")
	}
	onDisk := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(onDisk, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.keySigner(onDisk); err != nil {
		t.Fatalf("key file on disk: %v", err)
	}
	if _, err := p.keySigner(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "reading key file") {
		t.Fatalf("missing key file: %v", err)
	}
	bad, err := NewPool(Options{Keys: map[string][]byte{inline: []byte("not a key")}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.keySigner(inline); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("a broken in-memory key: %v (the error must not quote the key)", err)
	}
}
