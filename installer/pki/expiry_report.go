package pki

import (
	"errors"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// Kinds of stored certificates, as ExpiryReport groups them. A name the
// table does not know keeps its own: "<authority>/<name>".
const (
	KindEtcdPeer               = "etcd peer"
	KindEtcdServer             = "etcd server"
	KindEtcdClient             = "etcd client"
	KindAPIServerServing       = "kube-apiserver serving"
	KindAPIServerKubeletClient = "kube-apiserver kubelet client"
	KindFrontProxyClient       = "front-proxy client"
	KindControllerManager      = "controller-manager client"
	KindScheduler              = "scheduler client"
	KindKubeletClient          = "kubelet client"
	KindKubeletServing         = "kubelet serving"
	KindKubeProxy              = "kube-proxy client"
	KindAdmin                  = "admin client"
	KindAdminBreakGlass        = "break-glass admin client"
	KindLBAgent                = "load-balancer agent client"
	// KindServiceAccountKey is the service-account signing key: a key
	// pair without a certificate, so without an expiry.
	KindServiceAccountKey = "service-account key"
)

// CertKind names the kind of the stored certificate name (without .crt)
// under authority; ca reports an authority's own certificate (kind "CA
// <authority>"), which apply never renews.
func CertKind(authority, name string) (kind string, ca bool) {
	if name == "ca" {
		return "CA " + authority, true
	}
	switch {
	case strings.HasPrefix(name, "peer-"):
		return KindEtcdPeer, false
	case strings.HasPrefix(name, "server-"):
		return KindEtcdServer, false
	case authority == EtcdCA && strings.HasPrefix(name, "client-"):
		return KindEtcdClient, false
	case strings.HasPrefix(name, "kubelet-client-"):
		return KindKubeletClient, false
	case strings.HasPrefix(name, "kubelet-serving-"):
		return KindKubeletServing, false
	case strings.HasPrefix(name, "lb-agent-"):
		return KindLBAgent, false
	}
	switch name {
	case APIServerServing:
		return KindAPIServerServing, false
	case APIServerKubeletClient:
		return KindAPIServerKubeletClient, false
	case FrontProxyClient:
		return KindFrontProxyClient, false
	case ControllerManager:
		return KindControllerManager, false
	case Scheduler:
		return KindScheduler, false
	case KubeProxyClient:
		return KindKubeProxy, false
	case Admin:
		return KindAdmin, false
	case AdminBreakGlass:
		return KindAdminBreakGlass, false
	}
	return authority + "/" + name, false
}

// KindExpiry is the certificate of one kind that expires first.
type KindExpiry struct {
	Kind string `json:"kind"`
	// CA is set for an authority's certificate: apply does not renew it
	// (that is a CA rotation).
	CA bool `json:"ca,omitempty"`
	// NoExpiry is set for a key without a certificate (the
	// service-account key): nothing below applies.
	NoExpiry bool `json:"noExpiry,omitempty"`
	// File is the certificate that expires first: its path in the state
	// directory or its key in the engine state.
	File    string `json:"file"`
	Subject string `json:"subject,omitempty"`
	// Count is how many certificates of this kind the store holds.
	Count    int       `json:"count"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	// Left is NotAfter minus the report's time (negative once expired).
	Left time.Duration `json:"left,omitempty"`
	// RenewDue: it expires within the store's RenewBefore (and has not
	// yet); Expired: it has.
	RenewDue bool `json:"renewDue,omitempty"`
	Expired  bool `json:"expired,omitempty"`
}

// ExpiryReport is the earliest expiry of every kind of certificate the
// store holds, read from the store (not from the servers).
type ExpiryReport struct {
	// At is when the report was made (the store's clock).
	At          time.Time     `json:"at"`
	RenewBefore time.Duration `json:"renewBefore"`
	// Kinds are sorted by NotAfter (keys without expiry last).
	Kinds []KindExpiry `json:"kinds"`
	// Unused are the certificates the store still holds that nothing uses
	// any more (a removed server's, a member's before the etcd peer CA
	// split): listed, never judged, since no apply reissues them.
	Unused []string `json:"unused,omitempty"`
}

// ExpiryReport reads every certificate in the store and reports, per kind,
// the one that expires first, whether it is within the store's
// RenewBefore or expired. The service-account key is listed without an
// expiry. It creates nothing.
func (s *Store) ExpiryReport() (*ExpiryReport, error) { return s.ExpiryReportOf(nil) }

// ExpiryReportOf is ExpiryReport over the certificates inUse keeps (by
// authority and name without .crt; nil keeps all); the others are listed
// in Unused.
func (s *Store) ExpiryReportOf(inUse func(authority, name string) bool) (*ExpiryReport, error) {
	all, err := s.Expiries()
	if err != nil {
		return nil, err
	}
	now, renew := s.now(), s.renewBefore()
	r := &ExpiryReport{At: now, RenewBefore: renew}
	byKind := map[string]int{}
	for _, x := range all { // sorted by NotAfter: the first of a kind is its earliest
		if inUse != nil && x.Name != "ca" && !inUse(x.Authority, x.Name) {
			r.Unused = append(r.Unused, s.Where(x.Authority, x.Name+".crt"))
			continue
		}
		kind, ca := CertKind(x.Authority, x.Name)
		if i, ok := byKind[kind]; ok {
			r.Kinds[i].Count++
			continue
		}
		left := x.NotAfter.Sub(now)
		byKind[kind] = len(r.Kinds)
		r.Kinds = append(r.Kinds, KindExpiry{
			Kind: kind, CA: ca, File: s.Where(x.Authority, x.Name+".crt"), Subject: x.Subject, Count: 1,
			NotAfter: x.NotAfter, Left: left, Expired: left <= 0, RenewDue: left > 0 && left <= renew,
		})
	}
	sa := KubernetesCA + "/" + ServiceAccountKey + ".key"
	switch _, err := s.files().Stat(sa); {
	case err == nil:
		r.Kinds = append(r.Kinds, KindExpiry{Kind: KindServiceAccountKey, NoExpiry: true, File: s.files().Where(sa), Count: 1})
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return r, nil
}

// Leaves are the kinds apply renews (neither CAs nor keys without expiry).
func (r *ExpiryReport) Leaves() []KindExpiry {
	var out []KindExpiry
	for _, k := range r.Kinds {
		if !k.CA && !k.NoExpiry {
			out = append(out, k)
		}
	}
	return out
}

// RenewalDue reports whether a leaf certificate is within RenewBefore of
// its expiry or expired (an apply reissues it), the earliest leaf expiry
// and what expires then ("<kind> (<file>)"); earliest is zero when the
// store holds no leaf.
func (r *ExpiryReport) RenewalDue() (due bool, earliest time.Time, what string) {
	leaves := r.Leaves()
	sort.SliceStable(leaves, func(i, j int) bool { return leaves[i].NotAfter.Before(leaves[j].NotAfter) })
	for _, k := range leaves {
		due = due || k.RenewDue || k.Expired
	}
	if len(leaves) == 0 {
		return false, time.Time{}, ""
	}
	return due, leaves[0].NotAfter, leaves[0].Kind + " (" + leaves[0].File + ")"
}
