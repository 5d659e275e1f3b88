package pki

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"
)

// A forced renewal (tricenter certs renew) is recorded in the store, in
// RenewalFile: when it started and which leaves it renews. While it is not
// finished, Leaf reissues a listed leaf that was issued before the
// renewal started, even when it still matches its request and is far
// from expiry; a leaf issued since is kept. So every run that issues
// certificates (the renewal's own apply, a plain apply, a re-run after a
// renewal was stopped) finishes the renewal's reissues and never churns:
// "old" is "issued before the renewal started", a fact of the
// certificate, not of the run.
//
// Authorities are never listed (that is a CA rotation), nor the
// service-account key (it has no certificate).

// RenewalFile is the store file that records a forced renewal.
const RenewalFile = "renewal.json"

// IssueBackdate is how far before its issue a certificate's NotBefore is
// set (Issue backdates it for clocks slightly behind): a leaf was issued
// at NotBefore plus IssueBackdate.
const IssueBackdate = time.Hour

// IssuedAt is when the store issued c (NotBefore plus IssueBackdate).
func IssuedAt(c *x509.Certificate) time.Time { return c.NotBefore.Add(IssueBackdate) }

// IssuedBefore reports whether c was issued before t, at the second
// (certificates carry whole seconds: one issued in the second t falls in
// counts as issued at t).
func IssuedBefore(c *x509.Certificate, t time.Time) bool {
	return IssuedAt(c).Before(t.Truncate(time.Second))
}

// Renewal is a forced renewal of leaf certificates.
type Renewal struct {
	// Started is when the renewal began: a listed leaf issued before it
	// is reissued.
	Started time.Time `json:"started"`
	// Leaves are the renewed certificates, "<authority>/<name>" (the
	// file without .crt), sorted.
	Leaves []string `json:"leaves"`
	// Finished is set once every listed leaf was reissued and installed;
	// a finished renewal forces nothing.
	Finished time.Time `json:"finished,omitzero"`
}

// LeafID names a leaf in a Renewal: "<authority>/<name>".
func LeafID(authority, name string) string { return authority + "/" + name }

// Lists reports whether the renewal lists the leaf.
func (r *Renewal) Lists(authority, name string) bool {
	_, ok := slices.BinarySearch(r.Leaves, LeafID(authority, name))
	return ok
}

// Forces reports whether Leaf must reissue c, the stored authority/name:
// the renewal is not finished, lists it and c was issued before it
// started.
func (r *Renewal) Forces(authority, name string, c *x509.Certificate) bool {
	return r != nil && r.Finished.IsZero() && r.Lists(authority, name) && IssuedBefore(c, r.Started)
}

// Renewal reads the store's renewal record: nil when there is none.
func (s *Store) Renewal() (*Renewal, error) {
	f := s.files()
	b, err := f.ReadFile(RenewalFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var r Renewal
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w: move it away to drop the renewal it records", f.Where(RenewalFile), err)
	}
	sort.Strings(r.Leaves)
	return &r, nil
}

// renewalForces is Leaf's hook: whether the store's unfinished renewal
// forces the reissue of c, the stored caName/file.
func (s *Store) renewalForces(caName, file string, c *x509.Certificate) (bool, error) {
	r, err := s.Renewal()
	if err != nil {
		return false, err
	}
	return r.Forces(caName, file, c), nil
}

// BeginRenewal records a renewal of leaves ("<authority>/<name>") started
// at now and returns it. An unfinished renewal already recorded is
// resumed: its start is kept and leaves are added to its own (a leaf
// issued since that start counts as renewed). It refuses authorities and
// the service-account key.
func (s *Store) BeginRenewal(leaves []string, now time.Time) (*Renewal, error) {
	for _, id := range leaves {
		authority, name, ok := strings.Cut(id, "/")
		if !ok || authority == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("leaf %q: want <authority>/<name>", id)
		}
		if name == "ca" {
			return nil, fmt.Errorf("leaf %q is a certificate authority: renewing one is a CA rotation (tricenter certs rotate-ca)", id)
		}
		if name == ServiceAccountKey {
			return nil, fmt.Errorf("leaf %q is the service-account key: it has no certificate to renew", id)
		}
	}
	r, err := s.Renewal()
	if err != nil {
		return nil, err
	}
	if r == nil || !r.Finished.IsZero() {
		r = &Renewal{Started: now.UTC().Truncate(time.Second)}
	}
	r.Leaves = slices.Compact(slices.Sorted(slices.Values(append(r.Leaves, leaves...))))
	return r, s.saveRenewal(r)
}

// FinishRenewal marks the store's renewal finished at now (nothing when
// there is none).
func (s *Store) FinishRenewal(now time.Time) error {
	r, err := s.Renewal()
	if err != nil || r == nil || !r.Finished.IsZero() {
		return err
	}
	r.Finished = now.UTC().Truncate(time.Second)
	return s.saveRenewal(r)
}

func (s *Store) saveRenewal(r *Renewal) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	f := s.files()
	if err := f.WriteFile(RenewalFile, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", f.Where(RenewalFile), err)
	}
	return nil
}

// StoredLeaf is a leaf certificate of the store.
type StoredLeaf struct {
	Authority string `json:"authority"`
	Name      string `json:"name"`
	// Kind is its kind (CertKind).
	Kind string `json:"kind"`
	// Server is the server a per-server certificate belongs to (etcd
	// peer and server, kubelet client and serving); empty for a shared
	// one.
	Server   string    `json:"server,omitempty"`
	Subject  string    `json:"subject"`
	IssuedAt time.Time `json:"issuedAt"`
	NotAfter time.Time `json:"notAfter"`
	RenewDue bool      `json:"renewDue,omitempty"`
	Expired  bool      `json:"expired,omitempty"`
	File     string    `json:"file"`
	// Cert is the certificate itself.
	Cert *x509.Certificate `json:"-"`
}

// ID is the leaf's name in a Renewal.
func (l StoredLeaf) ID() string { return LeafID(l.Authority, l.Name) }

// LeafServer is the server a per-server leaf name belongs to ("" for a
// shared one).
func LeafServer(authority, name string) string {
	for _, p := range []string{"peer-", "server-", "kubelet-client-", "kubelet-serving-", "lb-agent-"} {
		if s, ok := strings.CutPrefix(name, p); ok {
			if p == "server-" && authority != EtcdCA {
				return ""
			}
			return s
		}
	}
	return ""
}

// Leaves lists the store's leaf certificates that inUse keeps (nil keeps
// all), sorted by authority and name: neither authorities nor the
// service-account key. RenewDue and Expired are judged at the store's
// clock against its RenewBefore.
func (s *Store) Leaves(inUse func(authority, name string) bool) ([]StoredLeaf, error) {
	f := s.files()
	names, err := f.List()
	if err != nil {
		return nil, err
	}
	now, renew := s.now(), s.renewBefore()
	var out []StoredLeaf
	for _, n := range names {
		authority, base, ok := strings.Cut(n, "/")
		if !ok || strings.Contains(base, "/") || !strings.HasSuffix(base, ".crt") {
			continue
		}
		name := strings.TrimSuffix(base, ".crt")
		kind, ca := CertKind(authority, name)
		if ca || (inUse != nil && !inUse(authority, name)) {
			continue
		}
		b, err := f.ReadFile(n)
		if err != nil {
			return nil, err
		}
		c, err := ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Where(n), err)
		}
		if c.IsCA {
			continue // an authority's other file (a rotation's next CA)
		}
		left := c.NotAfter.Sub(now)
		out = append(out, StoredLeaf{Authority: authority, Name: name, Kind: kind, Server: LeafServer(authority, name),
			Subject: c.Subject.CommonName, IssuedAt: IssuedAt(c), NotAfter: c.NotAfter,
			RenewDue: left > 0 && left <= renew, Expired: left <= 0, File: f.Where(n), Cert: c})
	}
	return out, nil
}
