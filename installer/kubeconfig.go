package installer

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/user"
	"slices"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// IssuedLog is the part of a Store that keeps the log of issued user
// certificates (state.Dir and state.Mem do). A store without one cannot
// issue user certificates: none leaves the engine unrecorded.
type IssuedLog interface {
	// AppendIssued adds a record to the log, atomically.
	AppendIssued(state.IssuedCert) error
	// Issued reads the log, oldest first.
	Issued() ([]state.IssuedCert, error)
}

var (
	_ IssuedLog = (*state.Dir)(nil)
	_ IssuedLog = (*state.Mem)(nil)
)

// ErrNoIssuedLog is returned when the engine's store keeps no
// issued-certificate log.
var ErrNoIssuedLog = errors.New("the engine state keeps no issued-certificate log")

// Overrides a UserCertRequest can ask for, as the issued-certificate log
// records them.
const (
	OverrideSystemGroups = "allow-system-groups"
	OverrideLongTTL      = "allow-long-ttl"
)

// UserCertRequest asks for a user kubeconfig.
type UserCertRequest struct {
	// User is the certificate's common name, Groups its organizations.
	User   string
	Groups []string
	// TTL is its validity (0: kubeconfig.DefaultUserTTL); at most
	// kubeconfig.MaxUserTTL unless AllowLongTTL, and never more than
	// kubeconfig.MaxLongUserTTL.
	TTL time.Duration
	// AllowSystemGroups lifts the refusal of reserved users and groups
	// (system:*, the admin's): see kubeconfig.CheckIdentity.
	AllowSystemGroups bool
	// AllowLongTTL lifts the kubeconfig.MaxUserTTL limit.
	AllowLongTTL bool
	// RequestedBy is who asks (default: this process, from Config.Holder
	// and the operating system).
	RequestedBy *state.Requester
}

// UserCert is an issued user kubeconfig and its record in the log.
type UserCert struct {
	// Kubeconfig holds the private key: write it 0600, never log it.
	Kubeconfig []byte
	Record     state.IssuedCert
}

// IssueUserKubeconfig issues a client certificate for req.User (with
// req.Groups) signed by the cluster CA, records it in the store's
// issued-certificate log and returns a kubeconfig with it for the API VIP.
// Reserved users and groups and validities over kubeconfig.MaxUserTTL are
// refused unless the request allows them (errors wrapping
// kubeconfig.ErrReservedIdentity and kubeconfig.ErrTTLTooLong). Nothing is
// returned when the record cannot be written. Neither the key nor the
// certificate is stored; RBAC decides what the user may do.
func (e *Engine) IssueUserKubeconfig(req UserCertRequest) (*UserCert, error) {
	ttl := req.TTL
	if ttl == 0 {
		ttl = kubeconfig.DefaultUserTTL
	}
	if err := kubeconfig.CheckIdentity(req.User, req.Groups, req.AllowSystemGroups); err != nil {
		return nil, err
	}
	if err := kubeconfig.CheckTTL(ttl, req.AllowLongTTL); err != nil {
		return nil, err
	}
	log, ok := e.cfg.Store.(IssuedLog)
	if !ok {
		return nil, fmt.Errorf("%w: no user certificate is issued unrecorded", ErrNoIssuedLog)
	}
	ca, err := e.kubernetesCA()
	if err != nil {
		return nil, err
	}
	now := e.cfg.Clock()
	kp, err := pki.Issue(ca, pki.Request{CommonName: req.User, Organization: req.Groups, Usage: pki.Client, Validity: ttl}, now)
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", req.User, err)
	}
	b, err := kubeconfig.Render(kubeconfig.Config{Cluster: e.cfg.Cluster.Metadata.Name, User: req.User, Server: e.APIServerURL(),
		CA: ca.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
	if err != nil {
		return nil, err
	}
	rec := state.IssuedCert{
		Serial:    serialHex(kp.Cert.SerialNumber),
		Subject:   kp.Cert.Subject.CommonName,
		Groups:    slices.Clone(kp.Cert.Subject.Organization),
		NotBefore: kp.Cert.NotBefore.UTC(),
		NotAfter:  kp.Cert.NotAfter.UTC(),
		SHA256:    pki.Fingerprint(kp.Cert),
		IssuedAt:  now.UTC(),
	}
	if req.AllowSystemGroups {
		rec.Overrides = append(rec.Overrides, OverrideSystemGroups)
	}
	if req.AllowLongTTL {
		rec.Overrides = append(rec.Overrides, OverrideLongTTL)
	}
	if req.RequestedBy != nil {
		rec.RequestedBy = *req.RequestedBy
	} else {
		rec.RequestedBy = e.requester()
	}
	e.log.Debug("Recording an issued user certificate", "user", rec.Subject, "groups", rec.Groups, "serial", rec.Serial,
		"notAfter", rec.NotAfter.Format(time.RFC3339))
	if err := log.AppendIssued(rec); err != nil {
		return nil, fmt.Errorf("recording the certificate for %s (not handed out): %w", req.User, err)
	}
	return &UserCert{Kubeconfig: b, Record: rec}, nil
}

// UserKubeconfig issues a user kubeconfig with the default limits (no
// reserved user or group, at most kubeconfig.MaxUserTTL) and returns it
// with its expiry: IssueUserKubeconfig without overrides.
func (e *Engine) UserKubeconfig(user string, groups []string, ttl time.Duration) ([]byte, time.Time, error) {
	if ttl <= 0 {
		return nil, time.Time{}, fmt.Errorf("a validity of %v: use %s or more", ttl, kubeconfig.FormatDuration(kubeconfig.MinUserTTL))
	}
	uc, err := e.IssueUserKubeconfig(UserCertRequest{User: user, Groups: groups, TTL: ttl})
	if err != nil {
		return nil, time.Time{}, err
	}
	return uc.Kubeconfig, uc.Record.NotAfter, nil
}

// IssuedCertificates is the store's issued-certificate log, oldest first.
func (e *Engine) IssuedCertificates() ([]state.IssuedCert, error) {
	log, ok := e.cfg.Store.(IssuedLog)
	if !ok {
		return nil, ErrNoIssuedLog
	}
	return log.Issued()
}

// serialHex is a serial number as `openssl x509 -noout -serial` prints
// it: upper-case hex, an even number of digits.
func serialHex(n *big.Int) string {
	s := fmt.Sprintf("%X", n)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// requester describes this process: Config.Holder, completed from the
// operating system.
func (e *Engine) requester() state.Requester {
	h := e.cfg.Holder
	r := state.Requester{User: h.User, Host: h.Host, PID: h.PID, Tool: h.Tool, Command: h.Command}
	if r.User == "" {
		if u, err := user.Current(); err == nil {
			r.User = u.Username
		}
	}
	if r.Host == "" {
		r.Host, _ = os.Hostname()
	}
	if r.PID == 0 {
		r.PID = os.Getpid()
	}
	r.SudoUser = os.Getenv("SUDO_USER")
	return r
}
