package installer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// PKIStore is the state's certificate store with the inventory's
// certificate policy (spec.pki: renewBefore, leafLifetime) set on it.
// Every engine path that issues certificates takes its store from here.
func (e *Engine) PKIStore() *pki.Store {
	states := e.cfg.Store
	return withPKIPolicy(states.PKI(), e.cfg.Cluster)
}

// withPKIPolicy sets c's spec.pki on s (the defaults when unset) and
// returns s.
func withPKIPolicy(s *pki.Store, c *inventory.Cluster) *pki.Store {
	s.RenewBefore = c.Spec.PKI.RenewBeforeDuration()
	s.LeafValidity = c.Spec.PKI.LeafLifetimeDuration()
	return s
}

// CertificateSourceStore says the expiry of a certificate was read from
// the state's copy, not from the server that uses it.
const CertificateSourceStore = "store"

// CertificateStatus is the certificates' expiry: per kind, the one in the
// state that expires first, and the API server's certificate as served
// now.
type CertificateStatus struct {
	// Source of Kinds: always CertificateSourceStore.
	Source      string           `json:"source"`
	RenewBefore time.Duration    `json:"renewBefore"`
	Kinds       []pki.KindExpiry `json:"kinds"`
	// Unused are certificates the state holds that the inventory no
	// longer uses (listed, not judged: no apply reissues them).
	Unused []string `json:"unused,omitempty"`
	// Served is the kube-apiserver serving certificate observed now
	// (a TLS handshake) on every control-plane server and the API VIP.
	Served []ServedCertificate `json:"served,omitempty"`
}

// ServedCertificate is the certificate one API endpoint served now.
type ServedCertificate struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Observed is false when no handshake completed (Error says why).
	Observed bool          `json:"observed"`
	NotAfter time.Time     `json:"notAfter,omitzero"`
	Left     time.Duration `json:"left,omitempty"`
	// MatchesStore: it is the certificate the state holds (the same
	// bytes); false while a server still serves an older one.
	MatchesStore bool   `json:"matchesStore"`
	Error        string `json:"error,omitempty"`
}

// CertificateExpiry reads every certificate in the state and reports the
// earliest expiry per kind against spec.pki.renewBefore, at the engine's
// clock. It touches no host; ErrNoPKI before the first apply.
func (e *Engine) CertificateExpiry() (*pki.ExpiryReport, error) {
	s := e.PKIStore()
	s.Now = e.cfg.Clock
	if ok, err := s.HasCA(pki.KubernetesCA); err != nil {
		return nil, err
	} else if !ok {
		if ok, err := s.HasCA(pki.EtcdCA); err != nil || !ok {
			return nil, errors.Join(ErrNoPKI, err)
		}
	}
	inUse, err := e.certificateInUse(s)
	if err != nil {
		return nil, err
	}
	return s.ExpiryReportOf(inUse)
}

// certificateInUse says whether a leaf of the store is one the inventory
// still uses: a per-server certificate (etcd peer and server, kubelet
// client and serving) of a server the inventory or the etcd placement no
// longer has is not, nor an etcd peer certificate under the etcd CA once
// the peer CA exists (the split left it behind). No apply reissues those,
// so judging them would report a renewal forever.
func (e *Engine) certificateInUse(s *pki.Store) (func(authority, name string) bool, error) {
	hosts := map[string]bool{}
	for _, h := range e.cfg.Cluster.Hosts() {
		hosts[h.Name] = true
	}
	members := map[string]bool{}
	for _, m := range e.Placement().Etcd.Members {
		members[m.Name] = true
	}
	split, err := s.HasCA(pki.EtcdPeerCA)
	if err != nil {
		return nil, err
	}
	return func(authority, name string) bool {
		if authority != pki.EtcdCA && authority != pki.EtcdPeerCA && authority != pki.KubernetesCA {
			return true
		}
		switch {
		case strings.HasPrefix(name, "peer-"):
			return members[strings.TrimPrefix(name, "peer-")] && (authority == pki.EtcdPeerCA || !split)
		case strings.HasPrefix(name, "server-") && authority == pki.EtcdCA:
			return members[strings.TrimPrefix(name, "server-")]
		case strings.HasPrefix(name, "kubelet-client-") && authority == pki.KubernetesCA:
			return hosts[strings.TrimPrefix(name, "kubelet-client-")]
		case strings.HasPrefix(name, "kubelet-serving-") && authority == pki.KubernetesCA:
			return hosts[strings.TrimPrefix(name, "kubelet-serving-")]
		}
		return true
	}, nil
}

// RenewalDue reports whether a leaf certificate in the state is within
// spec.pki.renewBefore of its expiry or expired (the next apply reissues
// it), the earliest leaf expiry and what expires then. The Terraform
// provider's Read calls it so a plan shows the renewal.
func (e *Engine) RenewalDue() (due bool, earliest time.Time, what string, err error) {
	r, err := e.CertificateExpiry()
	if err != nil {
		return false, time.Time{}, "", err
	}
	due, earliest, what = r.RenewalDue()
	return due, earliest, what, nil
}

// RenewalDue is Engine.RenewalDue for a store without an engine: c's
// spec.pki against the certificates in s at now.
//
// It judges every leaf the store holds; Engine.RenewalDue leaves out those
// the inventory no longer uses, so prefer it where an engine exists.
func RenewalDue(s *pki.Store, c *inventory.Cluster, now time.Time) (due bool, earliest time.Time, what string, err error) {
	s = withPKIPolicy(s, c)
	s.Now = func() time.Time { return now }
	r, err := s.ExpiryReport()
	if err != nil {
		return false, time.Time{}, "", err
	}
	due, earliest, what = r.RenewalDue()
	return due, earliest, what, nil
}

// certificateStatus builds the status's certificates section and its
// problems (expired) and warnings (renew due, a server serving another
// certificate than the state's). apis are the API endpoints status asks.
func (e *Engine) certificateStatus(ctx context.Context, apis []APIStatus) (cs *CertificateStatus, problems, warnings []string, err error) {
	r, err := e.CertificateExpiry()
	if err != nil {
		return nil, nil, nil, err
	}
	cs = &CertificateStatus{Source: CertificateSourceStore, RenewBefore: r.RenewBefore, Kinds: r.Kinds, Unused: r.Unused}
	problems, warnings = expiryFindings(r)
	store := e.PKIStore()
	ca, cerr := store.LoadCA(pki.KubernetesCA)
	apiCert, aerr := store.Load(pki.KubernetesCA, pki.APIServerServing)
	if cerr != nil || aerr != nil {
		return cs, problems, warnings, nil // nothing to compare with before the control plane exists
	}
	var eps []apiEndpoint
	var skipped []ServedCertificate
	for _, a := range apis {
		u, err := url.Parse(a.URL)
		if err != nil || u.Host == "" {
			continue
		}
		if !a.Ready { // a dead endpoint would cost a handshake timeout each
			skipped = append(skipped, ServedCertificate{Name: a.Name, Address: u.Host, Error: "not asked: its /readyz did not answer"})
			continue
		}
		eps = append(eps, apiEndpoint{Name: a.Name, Address: u.Host})
	}
	cs.Served = append(servedCertificates(ctx, e.Dial, ca.Cert, apiCert.Cert, eps, e.cfg.Clock()), skipped...)
	for _, s := range cs.Served {
		switch {
		case !s.Observed:
			// The API's own line says why it did not answer.
		case s.Left <= 0:
			problems = append(problems, fmt.Sprintf("certificates: %s (%s) serves a certificate that expired on %s: run tricenter apply (it restarts kube-apiserver with the state's)",
				s.Name, s.Address, s.NotAfter.UTC().Format(time.RFC3339)))
		case !s.MatchesStore:
			warnings = append(warnings, fmt.Sprintf("certificates: %s (%s) serves another kube-apiserver certificate than the state's (it expires %s): run tricenter apply to install and restart with the state's",
				s.Name, s.Address, s.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	return cs, problems, warnings, nil
}

// expiryFindings turns a report into problems (expired) and warnings
// (renew due).
func expiryFindings(r *pki.ExpiryReport) (problems, warnings []string) {
	for _, k := range r.Kinds {
		when := k.NotAfter.UTC().Format(time.RFC3339)
		fix := "run tricenter apply to reissue it and restart what uses it"
		if k.CA {
			fix = "apply does not renew an authority: it needs a CA rotation"
		}
		switch {
		case k.Expired:
			problems = append(problems, fmt.Sprintf("certificates: %s (%s) expired on %s: %s", k.Kind, k.File, when, fix))
		case k.RenewDue:
			warnings = append(warnings, fmt.Sprintf("certificates: %s (%s) expires on %s, within renewBefore %s: %s",
				k.Kind, k.File, when, ShortDuration(r.RenewBefore), fix))
		}
	}
	return problems, warnings
}

// apiEndpoint is an API address (host:port) and the name status gives it.
type apiEndpoint struct{ Name, Address string }

// servedCertificates does a TLS handshake with every endpoint (trusting
// ca, one at a time, each bounded) and reports the leaf it served against
// the state's copy want.
func servedCertificates(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error),
	ca, want *x509.Certificate, eps []apiEndpoint, now time.Time) []ServedCertificate {
	var out []ServedCertificate
	for _, ep := range eps {
		sc := ServedCertificate{Name: ep.Name, Address: ep.Address}
		c, err := handshake(ctx, dial, ca, ep.Address)
		if err != nil {
			sc.Error = err.Error()
		} else {
			sc.Observed, sc.NotAfter, sc.Left = true, c.NotAfter, c.NotAfter.Sub(now)
			sc.MatchesStore = c.Equal(want)
		}
		out = append(out, sc)
	}
	return out
}

// servedHandshakeTimeout bounds one endpoint's TLS handshake.
const servedHandshakeTimeout = 5 * time.Second

func handshake(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), ca *x509.Certificate, addr string) (*x509.Certificate, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, servedHandshakeTimeout)
	defer cancel()
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	// Verified against the state's CA and the address asked; an expired
	// certificate is still reported (its expiry is what is asked), so the
	// verification is ours, not crypto/tls's.
	var served *x509.Certificate
	conn := tls.Client(raw, &tls.Config{
		ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // verified below against the state's CA
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return errors.New("no certificate served")
			}
			c, err := x509.ParseCertificate(rawCerts[0])
			if err != nil {
				return err
			}
			// Checked at a moment inside its validity: an expired
			// certificate is reported, not refused.
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: c.NotBefore,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("served certificate is not signed by the state's Kubernetes CA: %w", err)
			}
			if err := c.VerifyHostname(host); err != nil {
				return fmt.Errorf("served certificate: %w", err)
			}
			served = c
			return nil
		},
	})
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	_ = conn.Close()
	return served, nil
}

// ShortDuration writes d rounded to the second without trailing zero
// units ("720h", "4m30s", "1h5m").
func ShortDuration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
