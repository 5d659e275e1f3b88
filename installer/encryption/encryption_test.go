package encryption

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	goldenfile "github.com/tricenter/terraform-provider-tricenter/internal/golden"
)

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) { t.Helper(); goldenfile.Check(t, name, got) }

// fakeKey is a fixed key (not random) so the goldens are stable.
func fakeKey(name, provider string, fill byte) Key {
	return Key{Name: name, Provider: provider, Secret: base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(fill), 32)))}
}

func TestEnsureGeneratesOnceAndKeepsAcrossStores(t *testing.T) {
	dir := t.TempDir()
	r1, out, err := Ensure(&pki.Store{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out != Created || len(r1.Keys) != 1 || r1.Keys[0].Name != "key-1" || r1.Keys[0].Provider != Secretbox {
		t.Fatalf("first Ensure: outcome %v, ring %v", out, r1)
	}
	b, err := base64.StdEncoding.DecodeString(r1.Keys[0].Secret)
	if err != nil || len(b) != KeySize {
		t.Fatalf("key is %d bytes (%v), want %d", len(b), err, KeySize)
	}
	st, err := os.Stat(filepath.Join(dir, StoreDir, KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %o, want 0600", KeyringFile, st.Mode().Perm())
	}
	// A second store over the same directory (the next run) keeps it.
	r2, out, err := Ensure(&pki.Store{Files: pki.DirFiles{Path: dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out != Kept || r2.Keys[0].Secret != r1.Keys[0].Secret {
		t.Fatalf("second Ensure: outcome %v, the key changed: %v", out, r2.Keys[0].Secret != r1.Keys[0].Secret)
	}

	// The provider's memory store, snapshotted and restored, keeps it too.
	mem := &pki.MemFiles{}
	m1, _, err := Ensure(&pki.Store{Files: mem}, nil)
	if err != nil {
		t.Fatal(err)
	}
	restored, err := pki.NewMemFiles(mem.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	m2, out, err := Ensure(&pki.Store{Files: restored}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out != Kept || m2.Keys[0].Secret != m1.Keys[0].Secret {
		t.Fatal("a restored memory store generated a new key")
	}
	if mode, _ := restored.Stat(StoreDir + "/" + KeyringFile); mode != 0o600 {
		t.Errorf("restored keyring mode %o, want 0600", mode)
	}
	if m1.Keys[0].Secret == r1.Keys[0].Secret {
		t.Error("two stores generated the same key")
	}
}

func TestKeysNeverPrintTheirSecret(t *testing.T) {
	k := fakeKey("key-1", Secretbox, 's')
	r := &Keyring{Keys: []Key{k, fakeKey("key-2", AESCBC, 'a')}}
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k),
		fmt.Sprint(r), fmt.Sprintf("%v %+v %#v %s", r, r, r, r),
		fmt.Sprintf("%v", HostConfig{Keyring: r}), fmt.Sprintf("%+v", &HostConfig{Keyring: r}),
	} {
		if strings.Contains(s, k.Secret) || strings.Contains(s, r.Keys[1].Secret) {
			t.Errorf("a key's secret is printed: %s", s)
		}
	}
	if got := r.String(); got != "key-1 (secretbox), key-2 (aescbc)" {
		t.Errorf("String() = %q", got)
	}
}

func TestEnsureAgainstTheServers(t *testing.T) {
	k1, k2 := fakeKey("key-1", Secretbox, '1'), fakeKey("key-2", Secretbox, '2')
	other := fakeKey("key-1", Secretbox, 'x') // key-1 with another secret
	stored := func(t *testing.T, keys ...Key) *pki.Store {
		t.Helper()
		s := pki.NewMemStore()
		if len(keys) > 0 {
			if err := Save(s, &Keyring{Keys: keys}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	ring := func(keys ...Key) *Keyring { return &Keyring{Keys: keys} }
	for _, tc := range []struct {
		name    string
		store   []Key
		hosts   map[string]*Keyring
		outcome Outcome
		want    []string // key names of the result
		err     string   // "" when it succeeds
	}{
		{name: "fresh servers", hosts: map[string]*Keyring{"a": nil, "b": nil}, outcome: Created, want: []string{"key-1"}},
		{name: "servers hold the state's key", store: []Key{k1}, hosts: map[string]*Keyring{"a": ring(k1), "b": nil},
			outcome: Kept, want: []string{"key-1"}},
		{name: "state added a key the servers lack", store: []Key{k2, k1}, hosts: map[string]*Keyring{"a": ring(k1)},
			outcome: Kept, want: []string{"key-2", "key-1"}},
		{name: "server holds another key-1", store: []Key{k1}, hosts: map[string]*Keyring{"a": ring(k1), "b": ring(other)},
			err: "b holds key-1 (secretbox)"},
		{name: "server holds a key the state dropped", store: []Key{k2}, hosts: map[string]*Keyring{"a": ring(k2, k1)},
			err: "a holds key-1 (secretbox)"},
		{name: "lost state adopts the servers' keys", hosts: map[string]*Keyring{"a": ring(k2, k1), "b": ring(k2, k1), "c": nil},
			outcome: Adopted, want: []string{"key-2", "key-1"}},
		{name: "lost state, servers disagree", hosts: map[string]*Keyring{"a": ring(k1), "b": ring(other)},
			err: "servers disagree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stored(t, tc.store...)
			r, out, err := Ensure(s, tc.hosts)
			if tc.err != "" {
				if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrKeyMismatch naming %q", err, tc.err)
				}
				for _, k := range []Key{k1, k2, other} {
					if strings.Contains(err.Error(), k.Secret) {
						t.Fatalf("the error quotes a secret: %v", err)
					}
				}
				if after, _ := Load(s); len(tc.store) == 0 && after != nil {
					t.Fatal("a refused Ensure wrote a keyring")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out != tc.outcome || !slices.Equal(r.Names(), tc.want) {
				t.Fatalf("outcome %v keys %v, want %v %v", out, r.Names(), tc.outcome, tc.want)
			}
			saved, err := Load(s)
			if err != nil || saved == nil || !saved.equal(r) {
				t.Fatalf("the store holds %v (%v), want %v", saved, err, r)
			}
		})
	}
}

func TestRenderAndParse(t *testing.T) {
	one := &Keyring{Keys: []Key{fakeKey("key-1", Secretbox, 'k')}}
	b, err := Render(one, []string{Secrets})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "encryption-config.yaml", b)
	// The first provider encrypts; identity comes last so Secrets
	// written before encryption stay readable.
	s := string(b)
	if i, j := strings.Index(s, "secretbox:"), strings.Index(s, "identity: {}"); i < 0 || j < i {
		t.Errorf("secretbox is not before identity:\n%s", s)
	}
	hc, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !hc.Keyring.equal(one) || !slices.Equal(hc.Resources, []string{Secrets}) {
		t.Errorf("parsed %v for %v, want %v for secrets", hc.Keyring, hc.Resources, one)
	}

	// A rotation's ring: a new secretbox key first, two older aescbc keys
	// grouped in one provider entry, for Secrets and ConfigMaps.
	ring := &Keyring{Keys: []Key{fakeKey("key-3", Secretbox, '3'), fakeKey("key-2", AESCBC, '2'), fakeKey("key-1", AESCBC, '1')}}
	b, err = Render(ring, []string{Secrets, ConfigMaps})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "encryption-config-rotation.yaml", b)
	hc, err = Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !hc.Keyring.equal(ring) || !slices.Equal(hc.Resources, []string{ConfigMaps, Secrets}) {
		t.Errorf("parsed %v for %v, want %v for configmaps and secrets", hc.Keyring, hc.Resources, ring)
	}

	if _, err := Render(one, nil); err == nil {
		t.Error("rendered a configuration for no resource")
	}
	if _, err := Render(one, []string{"pods"}); err == nil {
		t.Error("rendered a configuration for pods")
	}
	if _, err := Render(&Keyring{}, []string{Secrets}); err == nil {
		t.Error("rendered an empty keyring")
	}
}

func TestParseRefuses(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("z", 32)))
	for _, tc := range []struct{ name, yaml, want string }{
		{"not yaml", "secret: " + secret + "\n\t:", "not an EncryptionConfiguration"},
		{"unknown field", "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nsecret: " + secret + "\n", "not an EncryptionConfiguration"},
		{"another kind", "apiVersion: v1\nkind: ConfigMap\nresources: []\n", "kind"},
		{"kms", `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - kms: {apiVersion: v2, name: vault, endpoint: unix:///kms.sock}
  - identity: {}
`, "kms or aesgcm"},
		{"one name, two secrets", `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: key-1, secret: ` + secret + `}]}
- resources: [configmaps]
  providers:
  - secretbox: {keys: [{name: key-1, secret: ` + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("y", 32))) + `}]}
`, "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error quotes the content: %v", err)
			}
		})
	}
	// identity only: no keyring.
	hc, err := Parse([]byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: [{identity: {}}]\n"))
	if err != nil || hc.Keyring != nil {
		t.Fatalf("identity only: %v, %v", hc, err)
	}
}

func TestValidate(t *testing.T) {
	short := Key{Name: "key-1", Provider: Secretbox, Secret: base64.StdEncoding.EncodeToString(make([]byte, 16))}
	for _, tc := range []struct {
		name string
		keys []Key
		want string
	}{
		{"empty", nil, "no key"},
		{"bad name", []Key{fakeKey("primary", Secretbox, 'a')}, `"primary" is not key-<n>`},
		{"key-0", []Key{fakeKey("key-0", Secretbox, 'a')}, "is not key-<n>"},
		{"twice", []Key{fakeKey("key-1", Secretbox, 'a'), fakeKey("key-1", AESCBC, 'b')}, "appears twice"},
		{"short secretbox", []Key{short}, "32 bytes, this one 16"},
		{"not base64", []Key{{Name: "key-1", Provider: AESCBC, Secret: "!!"}}, "not base64"},
		{"aesgcm", []Key{fakeKey("key-1", "aesgcm", 'a')}, `provider "aesgcm"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Keyring{Keys: tc.keys}).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	ok := &Keyring{Keys: []Key{fakeKey("key-1", Secretbox, 'a'),
		{Name: "key-2", Provider: AESCBC, Secret: base64.StdEncoding.EncodeToString(make([]byte, 16))}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := ok.NextName(); got != "key-3" {
		t.Errorf("NextName = %s, want key-3", got)
	}
	if got := (*Keyring)(nil).NextName(); got != "key-1" {
		t.Errorf("NextName of no ring = %s, want key-1", got)
	}
}

func TestLoadRefusesADamagedKeyring(t *testing.T) {
	s := pki.NewMemStore()
	secret := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("q", 32)))
	for _, content := range []string{
		`{"keys": [{"name": "key-1", "provider": "secretbox", "secret": "` + secret + `", "extra": 1}]}`,
		`{"keys": [{"name": "key-1", "provider": "secretbox", "secret": "` + secret[:8] + `"}]}`,
		`not json ` + secret,
	} {
		if err := s.Files.WriteFile(StoreDir+"/"+KeyringFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(s)
		if err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
			t.Fatalf("Load of %.20q…: %v", content, err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:8]) {
			t.Fatalf("the error quotes the key: %v", err)
		}
		if _, _, err := Ensure(s, nil); err == nil {
			t.Fatal("Ensure replaced a damaged keyring")
		}
	}
}
