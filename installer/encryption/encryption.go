// Package encryption keeps the keys kube-apiserver encrypts Secrets with
// in etcd ("encryption at rest") and renders the EncryptionConfiguration
// (apiserver.config.k8s.io/v1) that names them.
//
// The keys live in the engine state next to the certificate authorities:
// one file, encryption/keys.json in the PKI store (pki.Store: the CLI's
// state directory, 0600, or the provider's Terraform state), holding an
// ordered keyring. The first key encrypts every write; every key decrypts.
// A key is 32 random bytes, generated once, named key-<n> so a rotation can
// add key-<n+1>: first as a decrypting key on every server, then first in
// the ring, then, once every Secret was rewritten, without the old key.
//
// The rendered configuration lists the keyring's providers (secretbox by
// default) and then identity, so Secrets written before encryption was
// turned on stay readable until they are rewritten. A KMS v2 provider
// would be one more provider kind in the ring (Key.Provider); none is
// built.
//
// Key material never appears in logs, errors, plans or command lines:
// Key and Keyring print their names only, and the configuration is written
// as secret content (phase.File Secret).
package encryption

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// Providers tricenter generates keys for.
const (
	// Secretbox is XSalsa20-Poly1305: authenticated, fast, 32-byte keys.
	// The default.
	Secretbox = "secretbox"
	// AESCBC is AES-CBC with PKCS#7 padding (kept readable: a ring may
	// hold aescbc keys installed by hand or by an older release).
	AESCBC = "aescbc"
)

// DefaultProvider is the provider of a new key.
const DefaultProvider = Secretbox

// KeySize is the size of a generated key in bytes.
const KeySize = 32

// Resources that can be encrypted.
const (
	Secrets    = "secrets"
	ConfigMaps = "configmaps"
)

// StoreDir and KeyringFile name the keyring in the PKI store.
const (
	StoreDir    = "encryption"
	KeyringFile = "keys.json"
)

// storeName is the keyring's name in the store's Files.
const storeName = StoreDir + "/" + KeyringFile

// Key is one encryption key. Its String names it without the secret.
type Key struct {
	// Name is key-<n>.
	Name string `json:"name"`
	// Provider is Secretbox or AESCBC.
	Provider string `json:"provider"`
	// Secret is the key, base64 (standard encoding) as the
	// EncryptionConfiguration takes it.
	Secret string `json:"secret"`
}

// String names the key and its provider, never the secret.
func (k Key) String() string { return k.Name + " (" + k.Provider + ")" }

// GoString is String: %#v never prints the secret either.
func (k Key) GoString() string { return k.String() }

// Keyring is the ordered keys: Keys[0] encrypts, every key decrypts.
type Keyring struct {
	Keys []Key `json:"keys"`
	// Rotation is the key rotation in progress (tricenter secrets
	// rotate-key), nil when none is: its stage says which configuration
	// the servers get (Serving) and where a stopped rotation resumes.
	Rotation *Rotation `json:"rotation,omitempty"`
}

// String lists the keys' names, never their secrets.
func (r *Keyring) String() string {
	if r == nil {
		return "no keyring"
	}
	names := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		names[i] = k.String()
	}
	return strings.Join(names, ", ")
}

// GoString is String.
func (r *Keyring) GoString() string { return r.String() }

// Names are the keys' names, in order.
func (r *Keyring) Names() []string {
	out := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		out[i] = k.Name
	}
	return out
}

var reKeyName = regexp.MustCompile(`^key-[1-9][0-9]{0,8}$`)

// Validate checks every key: a key-<n> name used once, a known provider,
// and a base64 secret of the size the provider needs. Errors name the key,
// never its secret.
func (r *Keyring) Validate() error {
	if r == nil || len(r.Keys) == 0 {
		return errors.New("the keyring has no key")
	}
	seen := map[string]bool{}
	var errs []error
	for i, k := range r.Keys {
		switch {
		case !reKeyName.MatchString(k.Name):
			errs = append(errs, fmt.Errorf("key %d: name %q is not key-<n>", i+1, k.Name))
			continue
		case seen[k.Name]:
			errs = append(errs, fmt.Errorf("key %s appears twice", k.Name))
		}
		seen[k.Name] = true
		b, err := base64.StdEncoding.DecodeString(k.Secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: the secret is not base64", k.Name))
			continue
		}
		switch k.Provider {
		case Secretbox:
			if len(b) != 32 {
				errs = append(errs, fmt.Errorf("key %s: a secretbox key has 32 bytes, this one %d", k.Name, len(b)))
			}
		case AESCBC:
			if len(b) != 16 && len(b) != 24 && len(b) != 32 {
				errs = append(errs, fmt.Errorf("key %s: an aescbc key has 16, 24 or 32 bytes, this one %d", k.Name, len(b)))
			}
		default:
			errs = append(errs, fmt.Errorf("key %s: provider %q is not %s or %s", k.Name, k.Provider, Secretbox, AESCBC))
		}
	}
	if r.Rotation != nil {
		if err := r.Rotation.check(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NextName is the name of a key added to the ring: key-<n+1> for the
// highest n in it.
func (r *Keyring) NextName() string {
	n := 0
	if r != nil {
		for _, k := range r.Keys {
			if i, err := strconv.Atoi(strings.TrimPrefix(k.Name, "key-")); err == nil && i > n {
				n = i
			}
		}
	}
	return "key-" + strconv.Itoa(n+1)
}

// NewKey generates a key of provider with 32 random bytes.
func NewKey(name, provider string) (Key, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return Key{}, fmt.Errorf("generating encryption key %s: %w", name, err)
	}
	return Key{Name: name, Provider: provider, Secret: base64.StdEncoding.EncodeToString(b)}, nil
}

// has reports whether the ring holds k (same name, provider and secret).
func (r *Keyring) has(k Key) bool {
	for _, x := range r.Keys {
		if x.Name == k.Name && x.Provider == k.Provider &&
			subtle.ConstantTimeCompare([]byte(x.Secret), []byte(k.Secret)) == 1 {
			return true
		}
	}
	return false
}

func (r *Keyring) equal(o *Keyring) bool {
	if len(r.Keys) != len(o.Keys) {
		return false
	}
	for i := range r.Keys {
		if !o.has(r.Keys[i]) || o.Keys[i].Name != r.Keys[i].Name {
			return false
		}
	}
	return true
}

// files is the store's backend (pki.Store's own rule: Files, else the
// directory Dir).
func files(s *pki.Store) pki.Files {
	if s.Files != nil {
		return s.Files
	}
	return pki.DirFiles{Path: s.Dir}
}

// Where names the keyring in messages: its path in the state directory or
// its key in the engine state.
func Where(s *pki.Store) string { return s.Where(StoreDir, KeyringFile) }

// Load reads the keyring from the store; nil (and no error) when the store
// has none.
func Load(s *pki.Store) (*Keyring, error) {
	b, err := files(s).ReadFile(storeName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading %s: %w", Where(s), err)
	}
	var r Keyring
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		// The decoder's message may quote the content: leave it out.
		return nil, fmt.Errorf("%s is not a keyring (JSON with keys: name, provider, secret): restore it from a backup of the state; "+
			"a new key would leave every Secret encrypted with the old one unreadable", Where(s))
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w: restore it from a backup of the state", Where(s), err)
	}
	return &r, nil
}

// Save writes the keyring into the store (0600).
func Save(s *pki.Store, r *Keyring) error {
	if err := r.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := files(s).WriteFile(storeName, b, pki.FileMode(storeName)); err != nil {
		return fmt.Errorf("writing %s: %w", Where(s), err)
	}
	return nil
}

// Outcome says what Ensure did.
type Outcome int

// Outcomes of Ensure.
const (
	// Kept: the store held the keyring.
	Kept Outcome = iota
	// Created: a first key was generated.
	Created
	// Adopted: the store had no keyring and the servers' was taken in.
	Adopted
)

// ErrKeyMismatch is wrapped when the servers hold encryption keys the
// state does not: writing the state's configuration would leave the
// Secrets encrypted with them unreadable.
var ErrKeyMismatch = errors.New("the servers hold encryption keys this state does not")

// Ensure returns the keyring of the store, creating it on first use. onHosts
// are the keyrings the control-plane servers already have, by server (nil
// or absent: none, see Parse):
//
//   - the store has a keyring: every key a server holds must be in it (a
//     server may lack a key the state added); otherwise ErrKeyMismatch;
//   - the store has none and no server has one: key-1 is generated
//     (DefaultProvider) and saved;
//   - the store has none and the servers have one, the same on each: it is
//     adopted into the store (a state restored from a backup older than
//     encryption); servers that disagree are ErrKeyMismatch.
//
// Errors name servers and keys, never secrets.
func Ensure(s *pki.Store, onHosts map[string]*Keyring) (*Keyring, Outcome, error) {
	stored, err := Load(s)
	if err != nil {
		return nil, Kept, err
	}
	var hosts []string
	for h, r := range onHosts {
		if r != nil {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	if stored != nil {
		var bad []string
		for _, h := range hosts {
			for _, k := range onHosts[h].Keys {
				if !stored.has(k) {
					bad = append(bad, fmt.Sprintf("%s holds %s", h, k))
				}
			}
		}
		if len(bad) > 0 {
			return nil, Kept, fmt.Errorf("%w: %s; the state (%s) has %s. Nothing was written. Work with the state that "+
				"installed these keys (tricenter state restore, or terraform import of the tricenter_cluster): "+
				"a configuration without them leaves every Secret they encrypted unreadable",
				ErrKeyMismatch, strings.Join(bad, "; "), Where(s), stored)
		}
		return stored, Kept, nil
	}
	if len(hosts) == 0 {
		k, err := NewKey("key-1", DefaultProvider)
		if err != nil {
			return nil, Kept, err
		}
		r := &Keyring{Keys: []Key{k}}
		if err := Save(s, r); err != nil {
			return nil, Kept, err
		}
		return r, Created, nil
	}
	first := onHosts[hosts[0]]
	for _, h := range hosts[1:] {
		if !onHosts[h].equal(first) {
			return nil, Kept, fmt.Errorf("%w: the state (%s) has no keyring and the servers disagree: %s holds %s, %s holds %s. "+
				"Nothing was written. Restore the state that installed them (tricenter state restore, or terraform import "+
				"of the tricenter_cluster)", ErrKeyMismatch, Where(s), hosts[0], first, h, onHosts[h])
		}
	}
	if err := first.Validate(); err != nil {
		return nil, Kept, fmt.Errorf("the encryption configuration on %s: %w", hosts[0], err)
	}
	if err := Save(s, first); err != nil {
		return nil, Kept, err
	}
	return first, Adopted, nil
}

// The EncryptionConfiguration, as apiserver.config.k8s.io/v1 spells it
// (only the fields tricenter writes or reads).
type config struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Resources  []resourceConfig `json:"resources"`
}

type resourceConfig struct {
	Resources []string         `json:"resources"`
	Providers []providerConfig `json:"providers"`
}

type providerConfig struct {
	AESCBC    *keysConfig     `json:"aescbc,omitempty"`
	Secretbox *keysConfig     `json:"secretbox,omitempty"`
	Identity  *struct{}       `json:"identity,omitempty"`
	AESGCM    json.RawMessage `json:"aesgcm,omitempty"`
	KMS       json.RawMessage `json:"kms,omitempty"`
}

type keysConfig struct {
	Keys []keyConfig `json:"keys"`
}

type keyConfig struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// APIVersion and Kind of the rendered configuration.
const (
	APIVersion = "apiserver.config.k8s.io/v1"
	Kind       = "EncryptionConfiguration"
)

// Render renders the EncryptionConfiguration for resources (Secrets, and
// ConfigMaps when asked): the keys the servers hold at the ring's stage
// (Serving: every key, but the new one alone once a rotation drops the
// old ones) in order, consecutive keys of one provider in one provider
// entry, then identity. It holds the keys: write it as secret content,
// 0600.
func Render(r *Keyring, resources []string) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	r = r.Serving()
	if len(resources) == 0 {
		return nil, errors.New("no resource to encrypt")
	}
	for _, res := range resources {
		if res != Secrets && res != ConfigMaps {
			return nil, fmt.Errorf("resource %q: only %s and %s are encrypted", res, Secrets, ConfigMaps)
		}
	}
	var ps []providerConfig
	for i, k := range r.Keys {
		kc := keyConfig{Name: k.Name, Secret: k.Secret}
		if i > 0 && r.Keys[i-1].Provider == k.Provider {
			last := &ps[len(ps)-1]
			if last.Secretbox != nil {
				last.Secretbox.Keys = append(last.Secretbox.Keys, kc)
			} else {
				last.AESCBC.Keys = append(last.AESCBC.Keys, kc)
			}
			continue
		}
		switch k.Provider {
		case Secretbox:
			ps = append(ps, providerConfig{Secretbox: &keysConfig{Keys: []keyConfig{kc}}})
		case AESCBC:
			ps = append(ps, providerConfig{AESCBC: &keysConfig{Keys: []keyConfig{kc}}})
		}
	}
	ps = append(ps, providerConfig{Identity: &struct{}{}})
	c := config{APIVersion: APIVersion, Kind: Kind,
		Resources: []resourceConfig{{Resources: slices.Clone(resources), Providers: ps}}}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Managed by tricenter: the keys are in the engine state ("+StoreDir+"/"+KeyringFile+").\n"), b...), nil
}

// HostConfig is what a server's EncryptionConfiguration holds.
type HostConfig struct {
	// Keyring is every aescbc and secretbox key, in the order the
	// configuration lists them.
	Keyring *Keyring
	// Resources are the resources it encrypts.
	Resources []string
}

// Parse reads an EncryptionConfiguration (a server's, to compare with the
// state before it is replaced). A key that appears for several resources
// must be the same everywhere; providers tricenter does not manage (kms,
// aesgcm) are an error, as replacing them would leave what they encrypted
// unreadable. Errors never quote the content.
func Parse(b []byte) (*HostConfig, error) {
	var c config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, errors.New("not an EncryptionConfiguration tricenter can read (apiVersion, kind, resources with " +
			"secretbox, aescbc or identity providers)")
	}
	if c.Kind != Kind || c.APIVersion != APIVersion {
		return nil, fmt.Errorf("kind %q apiVersion %q, want %s %s", c.Kind, c.APIVersion, Kind, APIVersion)
	}
	out := &HostConfig{Keyring: &Keyring{}}
	for _, rc := range c.Resources {
		out.Resources = append(out.Resources, rc.Resources...)
		for _, p := range rc.Providers {
			switch {
			case p.KMS != nil || p.AESGCM != nil:
				return nil, fmt.Errorf("it encrypts %s with a provider tricenter does not manage (kms or aesgcm): "+
					"decrypt them (or move them to a secretbox key) by hand first", strings.Join(rc.Resources, ", "))
			case p.Secretbox != nil:
				if err := out.add(Secretbox, p.Secretbox.Keys); err != nil {
					return nil, err
				}
			case p.AESCBC != nil:
				if err := out.add(AESCBC, p.AESCBC.Keys); err != nil {
					return nil, err
				}
			}
		}
	}
	slices.Sort(out.Resources)
	out.Resources = slices.Compact(out.Resources)
	if len(out.Keyring.Keys) == 0 {
		out.Keyring = nil
	}
	return out, nil
}

func (h *HostConfig) add(provider string, keys []keyConfig) error {
	for _, kc := range keys {
		k := Key{Name: kc.Name, Provider: provider, Secret: kc.Secret}
		if h.Keyring.has(k) {
			continue
		}
		for _, x := range h.Keyring.Keys {
			if x.Name == k.Name {
				return fmt.Errorf("key %s appears twice with different secrets or providers", k.Name)
			}
		}
		h.Keyring.Keys = append(h.Keyring.Keys, k)
	}
	return nil
}
