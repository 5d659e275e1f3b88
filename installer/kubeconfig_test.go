package installer

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// userCertEngine is an engine over a state directory holding the PKI an
// apply creates (no host involved), with a fixed clock.
func userCertEngine(t *testing.T, store func(*state.Dir) Store) (*Engine, *state.Dir, time.Time) {
	t.Helper()
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var s Store = st
	if store != nil {
		s = store(st)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: s, Clock: func() time.Time { return now },
		Holder: Holder{Tool: "tricenter", Command: "kubeconfig", PID: 4242, Host: "jump1", User: "ops"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	return e, st, now
}

// kubeconfigCert is the client certificate of a rendered kubeconfig.
func kubeconfigCert(t *testing.T, kc []byte) *x509.Certificate {
	t.Helper()
	rc, err := kubeconfig.REST(kc)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(rc.CertData)
	if blk == nil {
		t.Fatal("no client certificate in the kubeconfig")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIssueUserKubeconfig: a user certificate has the asked subject,
// groups and validity (8h by default), its record in the log names it
// (serial, fingerprint, validity, who asked) in issue order, and the log
// holds neither its key nor the certificate.
func TestIssueUserKubeconfig(t *testing.T) {
	e, st, now := userCertEngine(t, nil)
	t.Setenv("SUDO_USER", "alice")
	uc, err := e.IssueUserKubeconfig(UserCertRequest{User: "alice", Groups: []string{"platform", "oncall"}})
	if err != nil {
		t.Fatal(err)
	}
	cert := kubeconfigCert(t, uc.Kubeconfig)
	if cert.Subject.CommonName != "alice" || !reflect.DeepEqual(cert.Subject.Organization, []string{"oncall", "platform"}) ||
		!cert.NotAfter.Equal(now.Add(kubeconfig.DefaultUserTTL)) {
		t.Fatalf("certificate %v until %v, want alice in oncall, platform until %v", cert.Subject, cert.NotAfter, now.Add(8*time.Hour))
	}
	want := state.IssuedCert{Serial: serialHex(cert.SerialNumber), Subject: "alice", Groups: []string{"oncall", "platform"},
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), SHA256: pki.Fingerprint(cert),
		RequestedBy: state.Requester{User: "ops", SudoUser: "alice", Host: "jump1", PID: 4242, Tool: "tricenter", Command: "kubeconfig"},
		IssuedAt:    now}
	if !reflect.DeepEqual(uc.Record, want) {
		t.Fatalf("record %+v\nwant   %+v", uc.Record, want)
	}

	by := state.Requester{User: "root", Host: "jump2"}
	uc2, err := e.IssueUserKubeconfig(UserCertRequest{User: "bob", TTL: 30 * time.Minute, RequestedBy: &by})
	if err != nil {
		t.Fatal(err)
	}
	if uc2.Record.RequestedBy != by || !uc2.Record.NotAfter.Equal(now.Add(30*time.Minute)) || uc2.Record.Serial == want.Serial {
		t.Fatalf("second record %+v", uc2.Record)
	}
	got, err := e.IssuedCertificates()
	if err != nil || !reflect.DeepEqual(got, []state.IssuedCert{uc.Record, uc2.Record}) {
		t.Fatalf("log %+v (%v), want both records in order", got, err)
	}

	raw, err := os.ReadFile(st.IssuedPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, kc := range [][]byte{uc.Kubeconfig, uc2.Kubeconfig} {
		rc, err := kubeconfig.REST(kc)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(rc.CertData)
		kblk, _ := pem.Decode(rc.KeyData)
		for what, secret := range map[string]string{
			"the key (PEM)":         string(rc.KeyData),
			"the key (base64)":      base64.StdEncoding.EncodeToString(kblk.Bytes)[:40],
			"the certificate (PEM)": string(rc.CertData),
			"the certificate (DER)": base64.StdEncoding.EncodeToString(blk.Bytes)[:40],
			"a PEM block":           "-----BEGIN",
			"a key":                 "PRIVATE KEY",
		} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("the issued-certificate log holds %s:\n%s", what, raw)
			}
		}
	}
}

// TestUserKubeconfigRefusals: reserved users and groups and validities
// over 24h are refused, naming the value, and nothing is issued or
// recorded; the overrides let them through and are recorded; a leaf's
// validity is the most even with AllowLongTTL.
func TestUserKubeconfigRefusals(t *testing.T) {
	e, _, now := userCertEngine(t, nil)
	for _, tc := range []struct {
		req  UserCertRequest
		want error
		msg  string
	}{
		{UserCertRequest{User: "mallory", Groups: []string{"system:masters"}}, kubeconfig.ErrReservedIdentity, `group "system:masters" is reserved`},
		{UserCertRequest{User: "system:node:dc1-w01", Groups: []string{"system:nodes"}}, kubeconfig.ErrReservedIdentity, `user "system:node:dc1-w01" is reserved`},
		{UserCertRequest{User: "system:serviceaccount:kube-system:default"}, kubeconfig.ErrReservedIdentity, `user "system:serviceaccount:kube-system:default" is reserved`},
		{UserCertRequest{User: pki.KubeletClientUser}, kubeconfig.ErrReservedIdentity, `user "kube-apiserver-kubelet-client" is reserved`},
		{UserCertRequest{User: "mallory", Groups: []string{kubeconfig.AdminGroup}}, kubeconfig.ErrReservedIdentity, `group "tricenter:cluster-admins" is reserved`},
		{UserCertRequest{User: "alice", TTL: 25 * time.Hour}, kubeconfig.ErrTTLTooLong, "a validity of 25h is longer than 24h"},
		{UserCertRequest{User: "alice", TTL: 100000 * time.Hour, AllowLongTTL: true}, kubeconfig.ErrTTLTooLong, "a validity of 100000h is longer than 8760h"},
		{UserCertRequest{User: "alice", TTL: time.Second}, kubeconfig.ErrTTLTooShort, "a validity of 1s is shorter than 1m"},
	} {
		uc, err := e.IssueUserKubeconfig(tc.req)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || uc != nil {
			t.Errorf("%+v: %v, want %q", tc.req, err, tc.msg)
		}
	}
	if got, err := e.IssuedCertificates(); err != nil || len(got) != 0 {
		t.Fatalf("refusals recorded %d certificates (%v)", len(got), err)
	}
	if _, _, err := e.UserKubeconfig("mallory", []string{"system:masters"}, time.Hour); !errors.Is(err, kubeconfig.ErrReservedIdentity) {
		t.Errorf("UserKubeconfig (the provider's) issued system:masters: %v", err)
	}
	if _, _, err := e.UserKubeconfig("alice", nil, 48*time.Hour); !errors.Is(err, kubeconfig.ErrTTLTooLong) {
		t.Errorf("UserKubeconfig (the provider's) issued for 48h: %v", err)
	}
	if _, _, err := e.UserKubeconfig("alice", nil, 0); err == nil {
		t.Error("UserKubeconfig with no validity issued a certificate")
	}

	uc, err := e.IssueUserKubeconfig(UserCertRequest{User: "breakglass", Groups: []string{"system:masters"}, TTL: 48 * time.Hour,
		AllowSystemGroups: true, AllowLongTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	cert := kubeconfigCert(t, uc.Kubeconfig)
	if !reflect.DeepEqual(cert.Subject.Organization, []string{"system:masters"}) || !cert.NotAfter.Equal(now.Add(48*time.Hour)) ||
		!reflect.DeepEqual(uc.Record.Overrides, []string{OverrideSystemGroups, OverrideLongTTL}) {
		t.Fatalf("overridden: %v until %v, overrides %v", cert.Subject, cert.NotAfter, uc.Record.Overrides)
	}
	kc, until, err := e.UserKubeconfig("carol", []string{"devs"}, 24*time.Hour)
	if err != nil || !until.Equal(now.Add(24*time.Hour)) || kubeconfigCert(t, kc).Subject.CommonName != "carol" {
		t.Fatalf("UserKubeconfig for 24h: until %v, %v", until, err)
	}
	if got, err := e.IssuedCertificates(); err != nil || len(got) != 2 || got[0].Subject != "breakglass" || got[1].Subject != "carol" {
		t.Fatalf("log %+v (%v), want breakglass then carol", got, err)
	}
}

// TestSerialHex: serials read as openssl prints them.
func TestSerialHex(t *testing.T) {
	for n, want := range map[int64]string{0xCEA3: "CEA3", 0xEA3: "0EA3", 0x5: "05", 0: "00"} {
		if got := serialHex(big.NewInt(n)); got != want {
			t.Errorf("serialHex(%#x) = %q, want %q", n, got, want)
		}
	}
}

// storeWithoutLog is a Store that keeps no issued-certificate log.
type storeWithoutLog struct{ Store }

// storeFailingLog is a Store whose log cannot be written (a fake).
type storeFailingLog struct{ *state.Dir }

var errLogWrite = errors.New("disk full (fake)")

func (storeFailingLog) AppendIssued(state.IssuedCert) error { return errLogWrite }

// TestUserKubeconfigNeedsTheLog: without a log, or when the record
// cannot be written, no kubeconfig is handed out.
func TestUserKubeconfigNeedsTheLog(t *testing.T) {
	e, _, _ := userCertEngine(t, func(d *state.Dir) Store { return storeWithoutLog{d} })
	if uc, err := e.IssueUserKubeconfig(UserCertRequest{User: "alice"}); !errors.Is(err, ErrNoIssuedLog) || uc != nil {
		t.Errorf("store without a log: %v", err)
	}
	if _, err := e.IssuedCertificates(); !errors.Is(err, ErrNoIssuedLog) {
		t.Errorf("listing a store without a log: %v", err)
	}
	e, st, _ := userCertEngine(t, func(d *state.Dir) Store { return storeFailingLog{d} })
	uc, err := e.IssueUserKubeconfig(UserCertRequest{User: "alice"})
	if !errors.Is(err, errLogWrite) || uc != nil || !strings.Contains(err.Error(), "recording the certificate for alice (not handed out)") {
		t.Errorf("failing log: %v", err)
	}
	if recs, err := st.Issued(); err != nil || len(recs) != 0 {
		t.Errorf("failing log recorded %v (%v)", recs, err)
	}
}

// TestUserKubeconfigMem: the provider's in-memory state keeps the log in
// its snapshot.
func TestUserKubeconfigMem(t *testing.T) {
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := state.NewMem(map[string]string{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.UserKubeconfig("alice", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	recs, err := m.Issued()
	if err != nil || len(recs) != 1 || recs[0].Subject != "alice" || recs[0].RequestedBy.User == "" || recs[0].RequestedBy.Host == "" {
		t.Fatalf("Mem log %+v (%v)", recs, err)
	}
	if !strings.Contains(m.Snapshot()[state.IssuedFile], `"subject":"alice"`) {
		t.Fatalf("snapshot lacks the log: %v", m.Snapshot()[state.IssuedFile])
	}
}

// TestEngineCredentialAroundTheSwitch: before apply has bound the admin
// group there is no admin kubeconfig (pki.ErrNoAdmin) and the engine's own
// client uses the break-glass certificate; once the admin certificate is
// switched (here with a fake verify, no API server) both the admin
// kubeconfig and the engine use it, and the break-glass one stays apart.
// A state of an earlier release (admin in system:masters) keeps that
// admin, for the engine too, until the switch.
func TestEngineCredentialAroundTheSwitch(t *testing.T) {
	e, st, _ := userCertEngine(t, nil)
	if _, err := e.AdminKubeconfig(""); !errors.Is(err, pki.ErrNoAdmin) {
		t.Fatalf("AdminKubeconfig before the switch: %v, want ErrNoAdmin", err)
	}
	subject := func(kc []byte, err error) (string, []string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c := kubeconfigCert(t, kc)
		return c.Subject.CommonName, c.Subject.Organization
	}
	if cn, o := subject(e.engineKubeconfig("")); cn != pki.BreakGlassUser || !reflect.DeepEqual(o, []string{pki.MastersGroup}) {
		t.Fatalf("engine credential before the switch: %s %v, want the break-glass one", cn, o)
	}
	// An earlier release's admin, in system:masters.
	kube, err := st.PKI().CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PKI().Leaf(kube, pki.KubernetesCA, pki.Admin, pki.AdminRequest(pki.MastersGroup)); err != nil {
		t.Fatal(err)
	}
	for what, f := range map[string]func(string) ([]byte, error){"admin": e.AdminKubeconfig, "engine": e.engineKubeconfig} {
		if cn, o := subject(f("")); cn != pki.AdminUser || !reflect.DeepEqual(o, []string{pki.MastersGroup}) {
			t.Errorf("%s credential with an earlier release's admin: %s %v", what, cn, o)
		}
	}
	if _, _, err := st.PKI().SwitchAdmin(func(*pki.KeyPair) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for what, f := range map[string]func(string) ([]byte, error){"admin": e.AdminKubeconfig, "engine": e.engineKubeconfig} {
		if cn, o := subject(f("")); cn != pki.AdminUser || !reflect.DeepEqual(o, []string{pki.AdminGroup}) {
			t.Errorf("%s credential after the switch: %s %v, want %s in %s", what, cn, o, pki.AdminUser, pki.AdminGroup)
		}
	}
	if cn, o := subject(e.BreakGlassKubeconfig("https://198.18.0.1:6443")); cn != pki.BreakGlassUser || !reflect.DeepEqual(o, []string{pki.MastersGroup}) {
		t.Errorf("break-glass credential: %s %v", cn, o)
	}
}
