package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// A CA rotation replaces an authority with a new one while the cluster
// keeps answering, in three phases, each applied to every server that
// holds the authority's files before the next one starts:
//
//   - RotationTrust: every trust file holds the old CA and the next one
//     (a bundle); leaves are still signed by the old CA.
//   - RotationReissue: leaves are signed by the next CA (Leaf reissues
//     every one whose signature the next CA does not verify); trust files
//     still hold both.
//   - RotationFinish: trust files hold the next CA only.
//
// AdvanceRotation past RotationFinish completes it: the next CA becomes
// the authority's ca.crt/ca.key and the old certificate is kept as
// ca-previous.pem (the certificate only, never its key: for the record
// and for the CA guard, which accepts a server still holding the old and
// the new CA). The rotation is recorded in <authority>/rotation.json, the
// next CA in <authority>/ca-next.crt and ca-next.key.
//
// Store.CA and LoadCA see the rotation: they return the signing CA of the
// phase (old in RotationTrust, next after) with the trust bundle of the
// phase as its CertPEM, so every installer that writes CertPEM writes the
// bundle and every leaf is reissued in RotationReissue. Without a rotation
// they return the stored authority, byte for byte.
//
// The EtcdPeerCA rotation of a store whose peers still share the etcd CA
// (SharedPeerCA) is the split: the old CA is the etcd CA, the next one
// the new peer CA, and the end state is a store with its own peer CA, as a
// new cluster gets.

// RotationPhase is where a CA rotation stands.
type RotationPhase string

// The rotation phases, in order.
const (
	RotationTrust   RotationPhase = "trust"
	RotationReissue RotationPhase = "reissue"
	RotationFinish  RotationPhase = "finish"
	// RotationNone is returned by AdvanceRotation once the rotation is
	// complete.
	RotationNone RotationPhase = ""
)

// RotationPhases lists the phases in order.
func RotationPhases() []RotationPhase {
	return []RotationPhase{RotationTrust, RotationReissue, RotationFinish}
}

// Rotatable lists the authorities a CA rotation applies to (the
// service-account key is not a CA and is not rotated this way).
func Rotatable() []string { return []string{KubernetesCA, FrontProxyCA, EtcdCA, EtcdPeerCA} }

// Rotation is a CA rotation in progress: <authority>/rotation.json.
type Rotation struct {
	Authority string        `json:"authority"`
	Phase     RotationPhase `json:"phase"`
	Started   time.Time     `json:"started"`
	// PhaseStarted is when the store entered Phase.
	PhaseStarted time.Time `json:"phaseStarted"`
	// Applied says the servers hold the files of Phase (set by the
	// engine once its apply of the phase succeeded): the next run
	// advances instead of applying again.
	Applied bool `json:"applied,omitempty"`
	// Split: the EtcdPeerCA rotation of a store whose peers share the
	// etcd CA (the old CA is EtcdCA's).
	Split bool `json:"split,omitempty"`
	// Completing is set while the next CA replaces the old one (the step
	// after RotationFinish): a run that stops there completes it.
	Completing bool `json:"completing,omitempty"`
	// Old and Next are the sha256 fingerprints of the old and the next CA
	// certificates.
	Old  string `json:"old"`
	Next string `json:"next"`
}

// Rotation file names under an authority's directory.
const (
	rotationFile = "rotation.json"
	caNextCrt    = "ca-next.crt"
	caNextKey    = "ca-next.key"
	// CAPreviousFile is the certificate of the authority a rotation
	// replaced (no key is kept).
	CAPreviousFile = "ca-previous.pem"
)

// ErrRotationInProgress is wrapped by StartRotation while another
// authority's rotation is not finished.
var ErrRotationInProgress = errors.New("a CA rotation is in progress")

// ErrNoRotation is wrapped by AdvanceRotation when the authority is not
// being rotated.
var ErrNoRotation = errors.New("no CA rotation in progress")

// Rotation returns the rotation of the authority name in progress, nil
// when there is none.
func (s *Store) Rotation(name string) (*Rotation, error) {
	f := s.files()
	b, err := f.ReadFile(name + "/" + rotationFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var r Rotation
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w: restore it from a backup of the state, or remove it and %s to start the rotation again",
			f.Where(name+"/"+rotationFile), err, caNextCrt)
	}
	switch r.Phase {
	case RotationTrust, RotationReissue, RotationFinish:
	default:
		return nil, fmt.Errorf("%s: unknown phase %q", f.Where(name+"/"+rotationFile), r.Phase)
	}
	return &r, nil
}

// Rotations returns every rotation in progress (at most one, as
// StartRotation allows).
func (s *Store) Rotations() ([]*Rotation, error) {
	var out []*Rotation
	for _, name := range Rotatable() {
		r, err := s.Rotation(name)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Store) saveRotation(r *Rotation) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	name := r.Authority + "/" + rotationFile
	if err := s.files().WriteFile(name, append(b, '\n'), FileMode(name)); err != nil {
		return fmt.Errorf("writing %s: %w", s.files().Where(name), err)
	}
	return nil
}

// StartRotation starts the rotation of the authority name: it creates the
// next CA (the old one's subject, a new key) and records RotationTrust. A
// rotation of name already in progress is returned as it is. Another
// authority's rotation in progress is ErrRotationInProgress: one at a time.
func (s *Store) StartRotation(name string) (*Rotation, error) {
	if !slices.Contains(Rotatable(), name) {
		return nil, fmt.Errorf("authority %q: rotate one of %s", name, strings.Join(Rotatable(), ", "))
	}
	all, err := s.Rotations()
	if err != nil {
		return nil, err
	}
	if len(all) > 0 {
		r := all[0]
		if r.Authority == name {
			return r, nil
		}
		return nil, fmt.Errorf("%w: %s (phase %s, started %s): finish it first", ErrRotationInProgress, r.Authority, r.Phase,
			r.Started.UTC().Format(time.RFC3339))
	}
	split := false
	oldName := name
	if name == EtcdPeerCA {
		if split, err = s.etcdPeerCAShared(); err != nil {
			return nil, err
		}
		if split {
			oldName = EtcdCA
		}
	}
	old, err := s.readPair(oldName+"/ca.crt", oldName+"/ca.key")
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s CA: %w: there is nothing to rotate before the first apply", name, err)
	} else if err != nil {
		return nil, err
	}
	cn := old.Cert.Subject.CommonName
	if split {
		cn = "tricenter etcd peer CA" // as EnsureEtcd names a new cluster's
	}
	// A next CA left by a start that stopped before rotation.json was
	// written was never used: it is made again.
	next, err := s.newCA(cn)
	if err != nil {
		return nil, fmt.Errorf("creating the next %s CA: %w", name, err)
	}
	if err := s.savePair(next, name+"/"+caNextCrt, name+"/"+caNextKey); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	r := &Rotation{Authority: name, Phase: RotationTrust, Started: now, PhaseStarted: now, Split: split,
		Old: Fingerprint(old.Cert), Next: Fingerprint(next.Cert)}
	if err := s.saveRotation(r); err != nil {
		return nil, err
	}
	return r, nil
}

// MarkRotationApplied records that the servers hold the files of the
// current phase of name's rotation.
func (s *Store) MarkRotationApplied(name string) error {
	r, err := s.Rotation(name)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("%s: %w", name, ErrNoRotation)
	}
	r.Applied = true
	return s.saveRotation(r)
}

// AdvanceRotation moves name's rotation to its next phase
// (trust → reissue → finish) and, from RotationFinish, completes it
// (RotationNone): the next CA replaces the old one. Completing is
// crash-safe: the step is recorded first, then the next CA is copied over
// the old one (the old certificate kept as CAPreviousFile), then the next
// files are removed, then rotation.json; a run that stopped anywhere in
// between completes it when called again.
func (s *Store) AdvanceRotation(name string) (RotationPhase, error) {
	r, err := s.Rotation(name)
	if err != nil {
		return "", err
	}
	if r == nil {
		return "", fmt.Errorf("%s: %w", name, ErrNoRotation)
	}
	now := s.now().UTC()
	switch r.Phase {
	case RotationTrust:
		r.Phase = RotationReissue
	case RotationReissue:
		r.Phase = RotationFinish
	default:
		return RotationNone, s.completeRotation(r)
	}
	r.PhaseStarted, r.Applied = now, false
	return r.Phase, s.saveRotation(r)
}

// completeRotation replaces the old CA with the next one.
func (s *Store) completeRotation(r *Rotation) error {
	name := r.Authority
	if !r.Completing {
		r.Completing = true
		if err := s.saveRotation(r); err != nil {
			return err
		}
	}
	next, err := s.readPair(name+"/"+caNextCrt, name+"/"+caNextKey)
	switch {
	case errors.Is(err, ErrNotFound):
		// Removed by the run that stopped: ca.crt is the next CA already.
		if cur, err := s.readPair(name+"/ca.crt", name+"/ca.key"); err != nil {
			return fmt.Errorf("completing the %s CA rotation: %w", name, err)
		} else if Fingerprint(cur.Cert) != r.Next {
			return fmt.Errorf("completing the %s CA rotation: %s is gone and %s is not the next CA (%s): restore the state from a backup",
				name, s.Where(name, caNextCrt), s.Where(name, "ca.crt"), r.Next)
		}
	case err != nil:
		return err
	default:
		oldName := name
		if r.Split {
			oldName = EtcdCA
		}
		// The old certificate for the record, unless a stopped run
		// already replaced ca.crt.
		if b, err := s.files().ReadFile(oldName + "/ca.crt"); err == nil {
			if c, err := ParseCert(b); err == nil && Fingerprint(c) == r.Old {
				if err := s.files().WriteFile(name+"/"+CAPreviousFile, b, FileMode(CAPreviousFile)); err != nil {
					return err
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := s.savePair(next, name+"/ca.crt", name+"/ca.key"); err != nil {
			return err
		}
		if err := s.remove(name+"/"+caNextKey, name+"/"+caNextCrt); err != nil {
			return err
		}
	}
	if r.Split {
		// The peer certificates signed by the etcd CA before the split:
		// the members use the peer CA's now.
		names, err := s.files().List()
		if err != nil {
			return err
		}
		var stale []string
		for _, n := range names {
			if b := path.Base(n); path.Dir(n) == EtcdCA && strings.HasPrefix(b, "peer-") && (strings.HasSuffix(b, ".crt") || strings.HasSuffix(b, ".key")) {
				stale = append(stale, n)
			}
		}
		if err := s.remove(stale...); err != nil {
			return err
		}
	}
	return s.remove(name + "/" + rotationFile)
}

// remove deletes files of the store (none missing is an error).
func (s *Store) remove(names ...string) error {
	f := s.files()
	for _, n := range names {
		if err := checkName(n); err != nil {
			return err
		}
		switch x := f.(type) {
		case *MemFiles:
			x.Remove(n)
		case DirFiles:
			p, _ := x.path(n)
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		default:
			r, ok := f.(interface{ Remove(string) error })
			if !ok {
				return fmt.Errorf("removing %s: the store's files cannot be removed", f.Where(n))
			}
			if err := r.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// readPair is loadPair without the rotation view.
func (s *Store) readPair(crt, key string) (*KeyPair, error) {
	f := s.files()
	cb, err := f.ReadFile(crt)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", f.Where(crt), ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	kb, err := f.ReadFile(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", f.Where(key), ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	return parseKeyPair(cb, kb, f.Where(crt), f.Where(key))
}

// rotatingCA is the authority name as a rotation in progress shows it:
// nil when there is none. Its Cert and Key sign (the old CA in
// RotationTrust, the next one after); its CertPEM is the trust bundle
// (old and next in RotationTrust and RotationReissue, the signing CA
// first; next only in RotationFinish).
func (s *Store) rotatingCA(name string) (*KeyPair, error) {
	if !slices.Contains(Rotatable(), name) {
		return nil, nil
	}
	r, err := s.Rotation(name)
	if err != nil || r == nil {
		return nil, err
	}
	next, err := s.readPair(name+"/"+caNextCrt, name+"/"+caNextKey)
	if errors.Is(err, ErrNotFound) && r.Completing {
		return s.readPair(name+"/ca.crt", name+"/ca.key") // replaced already
	} else if err != nil {
		return nil, fmt.Errorf("%s CA rotation (%s): %w", name, r.Phase, err)
	}
	if r.Phase == RotationFinish || r.Completing {
		return next, nil
	}
	oldName := name
	if r.Split {
		oldName = EtcdCA
	}
	old, err := s.readPair(oldName+"/ca.crt", oldName+"/ca.key")
	if err != nil {
		return nil, fmt.Errorf("%s CA rotation (%s): %w", name, r.Phase, err)
	}
	// The signing CA first: a file that holds the bundle next to the
	// signing key (kube-controller-manager's --cluster-signing-cert-file
	// and --cluster-signing-key-file are the control plane's ca.crt and
	// ca.key) must start with the certificate of that key, as
	// tls.X509KeyPair reads it.
	signing, other := next, old
	if r.Phase == RotationTrust {
		signing, other = old, next
	}
	return &KeyPair{Cert: signing.Cert, Key: signing.Key, CertPEM: Bundle(signing.CertPEM, other.CertPEM), KeyPEM: signing.KeyPEM}, nil
}

// Bundle concatenates PEM certificates, each ending with a newline.
func Bundle(pems ...[]byte) []byte {
	var b bytes.Buffer
	for _, p := range pems {
		b.Write(p)
		if len(p) > 0 && p[len(p)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// ParseCerts parses every PEM certificate of b (other blocks are skipped).
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// KnownCA is what the store knows of an authority, as sha256 fingerprints
// of CA certificates: the CA guard accepts a server's file whose
// certificates are all known and include Current or Next.
type KnownCA struct {
	// Current is the authority's ca.crt (empty for an EtcdPeerCA being
	// split).
	Current string
	// Next is the next CA of a rotation in progress.
	Next string
	// Old are the certificates a rotation replaces or replaced: the old
	// CA during a rotation, CAPreviousFile after it.
	Old []string
}

// Accepts reports whether a file holding the certificates fps is fine:
// every one known, at least one the current or the next CA.
func (k KnownCA) Accepts(fps []string) bool {
	if len(fps) == 0 {
		return false
	}
	live := false
	for _, fp := range fps {
		switch {
		case fp == "":
			return false
		case fp == k.Current || fp == k.Next:
			live = true
		case slices.Contains(k.Old, fp):
		default:
			return false
		}
	}
	return live
}

// KnownCAs returns what the store knows of each authority it holds (or is
// splitting), by name. It creates nothing.
func (s *Store) KnownCAs() (map[string]KnownCA, error) {
	f := s.files()
	fp := func(name string) (string, error) {
		b, err := f.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		} else if err != nil {
			return "", err
		}
		c, err := ParseCert(b)
		if err != nil {
			return "", fmt.Errorf("%s: %w", f.Where(name), err)
		}
		return Fingerprint(c), nil
	}
	out := map[string]KnownCA{}
	for _, name := range Rotatable() {
		var k KnownCA
		var err error
		if k.Current, err = fp(name + "/ca.crt"); err != nil {
			return nil, err
		}
		prev, err := fp(name + "/" + CAPreviousFile)
		if err != nil {
			return nil, err
		}
		if prev != "" {
			k.Old = append(k.Old, prev)
		}
		r, err := s.Rotation(name)
		if err != nil {
			return nil, err
		}
		if r != nil {
			k.Next = r.Next
			if r.Old != "" && !slices.Contains(k.Old, r.Old) {
				k.Old = append(k.Old, r.Old)
			}
		}
		if k.Current != "" || k.Next != "" {
			out[name] = k
		}
	}
	return out, nil
}

// newCA generates a CA certificate and key: a new authority's (Store.CA)
// or the next one of a rotation (StartRotation).
func (s *Store) newCA(commonName string) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"tricenter"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return newKeyPair(der, key)
}

// EtcdPeerSplit returns the phase of an EtcdPeerCA rotation that splits
// the peer CA from the etcd CA (RotationNone when none is in progress).
func (s *Store) EtcdPeerSplit() (RotationPhase, error) {
	r, err := s.Rotation(EtcdPeerCA)
	if err != nil || r == nil || !r.Split {
		return RotationNone, err
	}
	if r.Completing {
		return RotationFinish, nil
	}
	return r.Phase, nil
}
