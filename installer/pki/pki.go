// Package pki generates and keeps the certificate authorities and leaf
// certificates a tricenter cluster needs: an etcd CA (peer, server and
// client certificates), a Kubernetes CA and a front-proxy CA.
//
// A Store keeps its files in a Files backend: a directory (DirFiles, the
// CLI's state directory) or memory (MemFiles, the provider's, filled from
// and snapshotted to Terraform state). Authorities are generated once and
// kept; a leaf certificate is reissued only when it no longer matches what
// is asked for (names, addresses, usage, issuer) or is close to expiry, so
// re-running converges and never churns certificates. Keys are ECDSA
// P-256, written 0600; every file is written whole (atomically on disk).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// Validity periods. Rotation is a later concern; expiry is reported by
// `tricenter etcd status`.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore is how close to expiry a leaf is reissued on apply
	// (default of Store.RenewBefore: spec.pki.renewBefore).
	RenewBefore = 30 * 24 * time.Hour
)

// Authority names: the sub-directories of the store.
const (
	EtcdCA       = "etcd"
	KubernetesCA = "kubernetes"
	FrontProxyCA = "front-proxy"
)

// ErrNotFound is returned by Load functions when a file does not exist.
var ErrNotFound = errors.New("not found")

// Usage says what a leaf certificate is for.
type Usage int

// Leaf usages.
const (
	// Server is a TLS server certificate.
	Server Usage = 1 << iota
	// Client is a TLS client certificate.
	Client
)

// Request describes a leaf certificate.
type Request struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
	// Validity is how long the certificate is valid (default
	// LeafValidity; never past the CA's expiry).
	Validity time.Duration
}

func (r Request) normalized() Request {
	r.DNSNames = sortedUnique(r.DNSNames)
	ips := make([]string, 0, len(r.IPs))
	for _, ip := range r.IPs {
		ips = append(ips, ip.String())
	}
	ips = sortedUnique(ips)
	r.IPs = r.IPs[:0:0]
	for _, s := range ips {
		r.IPs = append(r.IPs, net.ParseIP(s))
	}
	return r
}

func sortedUnique(xs []string) []string {
	out := slices.Clone(xs)
	sort.Strings(out)
	return slices.Compact(out)
}

// KeyPair is a certificate with its private key, both PEM encoded too.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// Store is the authorities and leaves, one sub-directory per authority:
//
//	etcd/ca.crt, ca.key
//	etcd/<name>.crt, <name>.key
//	kubernetes/ca.crt, ...
type Store struct {
	// Files holds the store's files; nil means a directory at Dir.
	Files Files
	// Dir is the directory of a store without Files (shorthand for
	// Files: DirFiles{Path: Dir}).
	Dir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RenewBefore is how close to expiry Leaf reissues a leaf (zero:
	// the RenewBefore constant); LeafValidity how long a leaf Leaf issues
	// without a Validity of its own is valid (zero: LeafValidity). The
	// engine sets both from spec.pki.
	RenewBefore  time.Duration
	LeafValidity time.Duration
}

func (s *Store) renewBefore() time.Duration {
	if s.RenewBefore > 0 {
		return s.RenewBefore
	}
	return RenewBefore
}

func (s *Store) leafValidity() time.Duration {
	if s.LeafValidity > 0 {
		return s.LeafValidity
	}
	return LeafValidity
}

// NewMemStore returns a store whose files live in memory only.
func NewMemStore() *Store { return &Store{Files: &MemFiles{}} }

func (s *Store) files() Files {
	if s.Files != nil {
		return s.Files
	}
	return DirFiles{Path: s.Dir}
}

// Where names a file of the authority caName in messages: its path on
// disk, or its key in the engine state.
func (s *Store) Where(caName, file string) string { return s.files().Where(caName + "/" + file) }

// exists reports whether the store holds name.
func (s *Store) exists(name string) (bool, error) {
	_, err := s.files().Stat(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// HasCA reports whether the store holds the certificate of the authority
// called name (it creates nothing).
func (s *Store) HasCA(name string) (bool, error) { return s.exists(name + "/ca.crt") }

// LoadCA loads the authority called name without creating it:
// ErrNotFound when it is missing.
func (s *Store) LoadCA(name string) (*KeyPair, error) {
	return s.loadPair(name+"/ca.crt", name+"/ca.key")
}

// Load loads the leaf file (without extension) of the authority caName
// without issuing it: ErrNotFound when it is missing.
func (s *Store) Load(caName, file string) (*KeyPair, error) {
	return s.loadPair(caName+"/"+file+".crt", caName+"/"+file+".key")
}

// loadPair reads a certificate and its key from the store; ErrNotFound
// when either is missing.
// An authority's ca.crt and ca.key under a CA rotation in progress are
// the rotation's view of it (rotatingCA: the signing CA with the trust
// bundle); without a rotation they are read as they are.
func (s *Store) loadPair(crt, key string) (*KeyPair, error) {
	if name, ok := strings.CutSuffix(crt, "/ca.crt"); ok && key == name+"/ca.key" {
		if kp, err := s.rotatingCA(name); err != nil || kp != nil {
			return kp, err
		}
	}
	return s.readPair(crt, key)
}

// savePair writes kp's key (0600) and certificate (0644) into the store.
func (s *Store) savePair(kp *KeyPair, crt, key string) error {
	f := s.files()
	if err := f.WriteFile(key, kp.KeyPEM, FileMode(key)); err != nil {
		return fmt.Errorf("writing %s: %w", f.Where(key), err)
	}
	if err := f.WriteFile(crt, kp.CertPEM, FileMode(crt)); err != nil {
		return fmt.Errorf("writing %s: %w", f.Where(crt), err)
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ErrIncompleteCA is wrapped when the store holds one half of an
// authority (its certificate without its key, or the reverse): the state is
// damaged or partly restored, and a new CA would break the running cluster.
var ErrIncompleteCA = errors.New("incomplete certificate authority")

// CA loads the authority called name, creating it on first use: only when
// neither its certificate nor its key exists. One half without the other is
// ErrIncompleteCA, never a new CA.
func (s *Store) CA(name, commonName string) (*KeyPair, error) {
	crt, keyFile := name+"/ca.crt", name+"/ca.key"
	kp, err := s.loadPair(crt, keyFile)
	switch {
	case err == nil:
		if !kp.Cert.IsCA {
			return nil, fmt.Errorf("%s is not a CA certificate: move it away and re-run", s.files().Where(crt))
		}
		return kp, nil
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	if err := s.bothOrNeither(crt, keyFile); err != nil {
		return nil, fmt.Errorf("%s CA: %w", name, err)
	}
	kp, err = s.newCA(commonName)
	if err != nil {
		return nil, fmt.Errorf("creating CA %s: %w", name, err)
	}
	if err := s.savePair(kp, crt, keyFile); err != nil {
		return nil, err
	}
	return kp, nil
}

// bothOrNeither fails when exactly one of an authority's two files exists.
func (s *Store) bothOrNeither(crt, key string) error {
	hasCrt, err := s.exists(crt)
	if err != nil {
		return err
	}
	hasKey, err := s.exists(key)
	if err != nil {
		return err
	}
	switch {
	case hasCrt && !hasKey:
		return fmt.Errorf("%w: %s exists without %s: restore the key with the state it belongs to "+
			"(tricenter state restore, or terraform import of the tricenter_cluster): a new CA would not be trusted by the running cluster",
			ErrIncompleteCA, s.files().Where(crt), path.Base(key))
	case !hasCrt && hasKey:
		return fmt.Errorf("%w: %s exists without %s: restore the certificate with the state it belongs to "+
			"(tricenter state restore, or terraform import of the tricenter_cluster)", ErrIncompleteCA, s.files().Where(key), path.Base(crt))
	}
	return nil
}

// ServiceAccountAuthority names the service-account signing key among the
// authorities Fingerprints reports (it signs tokens the way a CA signs
// certificates).
const ServiceAccountAuthority = "service-account"

// Fingerprints are the sha256 fingerprints of the authorities the store
// holds, by name (EtcdCA, EtcdPeerCA, KubernetesCA, FrontProxyCA: of the CA
// certificate's DER; ServiceAccountAuthority: of the public key's PKIX DER).
// It creates nothing; an authority the store lacks is absent, one it holds
// only half of is ErrIncompleteCA.
func (s *Store) Fingerprints() (map[string]string, error) {
	f := s.files()
	out := map[string]string{}
	for _, name := range []string{EtcdCA, EtcdPeerCA, KubernetesCA, FrontProxyCA} {
		crt, key := name+"/ca.crt", name+"/ca.key"
		if err := s.bothOrNeither(crt, key); err != nil {
			return nil, fmt.Errorf("%s CA: %w", name, err)
		}
		b, err := f.ReadFile(crt)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		c, err := ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Where(crt), err)
		}
		out[name] = Fingerprint(c)
	}
	key, pub := KubernetesCA+"/"+ServiceAccountKey+".key", KubernetesCA+"/"+ServiceAccountKey+".pub"
	kb, err := f.ReadFile(key)
	switch {
	case err == nil:
		sa, err := parseServiceAccount(kb)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Where(key), err)
		}
		fp, err := PublicKeyFingerprint(sa.PublicPEM)
		if err != nil {
			return nil, err
		}
		out[ServiceAccountAuthority] = fp
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	default:
		if ok, err := s.exists(pub); err != nil {
			return nil, err
		} else if ok {
			return nil, fmt.Errorf("%w: %s exists without %s: restore the key with the state it belongs to",
				ErrIncompleteCA, f.Where(pub), path.Base(key))
		}
	}
	return out, nil
}

// PublicKeyFingerprint is the hex sha256 of the first PEM block's DER (a
// PUBLIC KEY or a CERTIFICATE's public key).
func PublicKeyFingerprint(b []byte) (string, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return "", errors.New("no PEM block")
	}
	der := block.Bytes
	if block.Type == "CERTIFICATE" {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", err
		}
		der = c.RawSubjectPublicKeyInfo
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}

// Leaf returns the leaf certificate file name (without extension) under
// the authority, issuing or reissuing it when the stored one does not
// match req, was signed by another key or expires within the store's
// RenewBefore. A request without a Validity gets the store's LeafValidity.
// changed reports whether a new certificate was written.
func (s *Store) Leaf(ca *KeyPair, caName, file string, req Request) (kp *KeyPair, changed bool, err error) {
	if strings.ContainsAny(file, "/\\") || file == "" || file == "ca" {
		return nil, false, fmt.Errorf("certificate name %q: use a plain file name other than ca", file)
	}
	req = req.normalized()
	if req.Validity <= 0 {
		req.Validity = s.leafValidity()
	}
	crt, key := caName+"/"+file+".crt", caName+"/"+file+".key"
	old, err := s.loadPair(crt, key)
	if err == nil && matches(old.Cert, ca.Cert, req, s.now(), s.renewBefore()) {
		// A forced renewal (renew.go) reissues it even so.
		if forced, ferr := s.renewalForces(caName, file, old.Cert); ferr != nil {
			return nil, false, ferr
		} else if !forced {
			return old, false, nil
		}
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	kp, err = Issue(ca, req, s.now())
	if err != nil {
		return nil, false, fmt.Errorf("issuing %s/%s: %w", caName, file, err)
	}
	if err := s.savePair(kp, crt, key); err != nil {
		return nil, false, err
	}
	return kp, true, nil
}

// ErrNotIssuedHere is wrapped by Adopt for a certificate the store's
// authority did not sign.
var ErrNotIssuedHere = errors.New("not signed by this state's authority")

// Adopt puts a leaf certificate issued earlier (read back from the server
// that holds it, when the state that recorded it was lost or never had it)
// into the store as caName/file, so Leaf keeps it while it matches instead
// of issuing a new one. It adopts only a certificate with its own key,
// signed by the store's authority caName and not expired; a store that
// already holds caName/file keeps its own (adopted is false).
func (s *Store) Adopt(caName, file string, certPEM, keyPEM []byte) (adopted bool, err error) {
	if strings.ContainsAny(file, "/\\") || file == "" || file == "ca" {
		return false, fmt.Errorf("certificate name %q: use a plain file name other than ca", file)
	}
	crt, key := caName+"/"+file+".crt", caName+"/"+file+".key"
	if ok, err := s.exists(crt); err != nil || ok {
		return false, err
	}
	ca, err := s.LoadCA(caName)
	if err != nil {
		return false, fmt.Errorf("adopting %s/%s: %w", caName, file, err)
	}
	kp, err := parseKeyPair(certPEM, keyPEM, "the certificate", "its key")
	if err != nil {
		return false, fmt.Errorf("adopting %s/%s: %w", caName, file, err)
	}
	if err := kp.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		return false, fmt.Errorf("adopting %s/%s: %w", caName, file, ErrNotIssuedHere)
	}
	if !s.now().Before(kp.Cert.NotAfter) {
		return false, fmt.Errorf("adopting %s/%s: it expired on %s", caName, file, kp.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := s.savePair(kp, crt, key); err != nil {
		return false, err
	}
	return true, nil
}

// Issue signs a new leaf certificate for req with ca.
func Issue(ca *KeyPair, req Request, now time.Time) (*KeyPair, error) {
	if req.CommonName == "" {
		return nil, errors.New("certificate request without a common name")
	}
	if req.Usage == 0 {
		return nil, fmt.Errorf("certificate request %s has no usage (server, client or both)", req.CommonName)
	}
	req = req.normalized()
	validity := req.Validity
	if validity <= 0 {
		validity = LeafValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial(),
		Subject:        pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.Add(validity),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    extUsages(req.Usage),
		DNSNames:       req.DNSNames,
		IPAddresses:    req.IPs,
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	if ca.Cert.NotAfter.Before(tmpl.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	return newKeyPair(der, key)
}

func extUsages(u Usage) []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	if u&Server != 0 {
		out = append(out, x509.ExtKeyUsageServerAuth)
	}
	if u&Client != 0 {
		out = append(out, x509.ExtKeyUsageClientAuth)
	}
	return out
}

// Matches reports whether cert satisfies req, was issued by ca and stays
// valid for more than RenewBefore after now.
func Matches(cert, ca *x509.Certificate, req Request, now time.Time) bool {
	return matches(cert, ca, req, now, RenewBefore)
}

func matches(cert, ca *x509.Certificate, req Request, now time.Time, renewBefore time.Duration) bool {
	req = req.normalized()
	if cert.CheckSignatureFrom(ca) != nil {
		return false
	}
	if now.Add(renewBefore).After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return false
	}
	if cert.Subject.CommonName != req.CommonName || !slices.Equal(cert.Subject.Organization, req.Organization) {
		return false
	}
	if !slices.Equal(sortedUnique(cert.DNSNames), req.DNSNames) {
		return false
	}
	var have []string
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	var want []string
	for _, ip := range req.IPs {
		want = append(want, ip.String())
	}
	if !slices.Equal(sortedUnique(have), sortedUnique(want)) {
		return false
	}
	return slices.Equal(cert.ExtKeyUsage, extUsages(req.Usage))
}

func newKeyPair(der []byte, key *ecdsa.PrivateKey) (*KeyPair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Save writes the certificate (0644) and key (0600) atomically.
func (kp *KeyPair) Save(certPath, keyPath string) error {
	if err := fsutil.WriteFileAtomic(keyPath, kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(certPath, kp.CertPEM, 0o644)
}

// LoadKeyPair reads a PEM certificate and key from files on disk;
// ErrNotFound when either is missing.
func LoadKeyPair(certPath, keyPath string) (*KeyPair, error) {
	cb, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", certPath, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", keyPath, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	return parseKeyPair(cb, kb, certPath, keyPath)
}

// parseKeyPair parses a PEM certificate and the key that belongs to it;
// certWhere and keyWhere name them in errors.
func parseKeyPair(cb, kb []byte, certWhere, keyWhere string) (*KeyPair, error) {
	cert, err := ParseCert(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certWhere, err)
	}
	kblock, _ := pem.Decode(kb)
	if kblock == nil {
		return nil, fmt.Errorf("%s: no PEM block", keyWhere)
	}
	var key crypto.Signer
	switch kblock.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kblock.Bytes)
	case "PRIVATE KEY":
		var k any
		k, err = x509.ParsePKCS8PrivateKey(kblock.Bytes)
		if err == nil {
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("%s: unsupported key type", keyWhere)
			}
			key = s
		}
	default:
		return nil, fmt.Errorf("%s: unsupported PEM block %q", keyWhere, kblock.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyWhere, err)
	}
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to %s: remove both and re-run", keyWhere, certWhere)
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: cb, KeyPEM: kb}, nil
}

// ParseCert parses the first PEM certificate of b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	x, ok := a.(eq)
	return ok && x.Equal(b)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b := elliptic.MarshalCompressed(pub.Curve, pub.X, pub.Y) //nolint:staticcheck // stable identifier only
	h := sha256.Sum256(b)
	return h[:20]
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

// Expiry describes one stored certificate.
type Expiry struct {
	Authority string    `json:"authority"`
	Name      string    `json:"name"`
	Subject   string    `json:"subject"`
	NotAfter  time.Time `json:"notAfter"`
}

// Expiries lists every certificate in the store, sorted by expiry.
func (s *Store) Expiries() ([]Expiry, error) {
	f := s.files()
	names, err := f.List()
	if err != nil {
		return nil, err
	}
	var out []Expiry
	for _, name := range names {
		if !strings.HasSuffix(name, ".crt") {
			continue
		}
		b, err := f.ReadFile(name)
		if err != nil {
			return nil, err
		}
		c, err := ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Where(name), err)
		}
		out = append(out, Expiry{
			Authority: path.Dir(name), Name: strings.TrimSuffix(path.Base(name), ".crt"),
			Subject: c.Subject.CommonName, NotAfter: c.NotAfter,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out, nil
}
