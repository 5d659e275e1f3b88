package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The etcd peer CA against real etcd: three members (the pinned server,
// .cache/artifacts/etcd, each in its own network namespace) started with
// the TLS files PKIFiles lists and the TLS settings RenderEnv renders
// (memberProcs), once with the split CAs of a new store and once with the
// shared CA of a store written before the split.

// writeSharedEtcdStore writes the etcd PKI as the release before the peer
// CA split did: one etcd CA signs every certificate, peer certificates are
// named after their member.
func writeSharedEtcdStore(t *testing.T, s *pki.Store, members []inventory.Member) {
	t.Helper()
	var pm []pki.EtcdMember
	for _, m := range members {
		pm = append(pm, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	writeSharedEtcdStoreFor(t, s, pm)
}

func writeSharedEtcdStoreFor(t *testing.T, s *pki.Store, members []pki.EtcdMember) {
	t.Helper()
	ca, err := s.CA(pki.EtcdCA, "tricenter etcd CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		ip := net.ParseIP(m.Address)
		for file, req := range map[string]pki.Request{
			"peer-" + m.Name:   {CommonName: m.Name, DNSNames: []string{m.Name}, IPs: []net.IP{ip}, Usage: pki.Server | pki.Client},
			"server-" + m.Name: {CommonName: m.Name, DNSNames: []string{m.Name, "localhost"}, IPs: []net.IP{ip, net.IPv4(127, 0, 0, 1)}, Usage: pki.Server | pki.Client},
		} {
			if _, _, err := s.Leaf(ca, pki.EtcdCA, file, req); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// tlsGet opens a TLS connection to url from the namespace of a member (so
// that etcd's check of a peer certificate's addresses against the
// connection's source passes) with cert, trusting roots, and returns the
// HTTP status of a GET: an error when the member refuses the certificate.
func tlsGet(ctx context.Context, from *labnet.NS, url string, cert *pki.KeyPair, roots *x509.Certificate) (int, error) {
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(roots)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// Presented whatever CAs the server names (Go's default would
		// send no certificate that none of them signed).
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return from.DialContext(ctx, &net.Dialer{}, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// refusedTLS asserts that a GET with the certificate fails in TLS.
func refusedTLS(t *testing.T, ctx context.Context, from *labnet.NS, what, url string, cert *pki.KeyPair, roots *x509.Certificate) {
	t.Helper()
	code, err := tlsGet(ctx, from, url, cert, roots)
	if err == nil {
		t.Errorf("%s: accepted (HTTP %d), want a refused TLS handshake", what, code)
		return
	}
	if msg := err.Error(); !strings.Contains(msg, "tls: bad certificate") && !strings.Contains(msg, "tls: unknown certificate authority") {
		t.Errorf("%s: %v, want a TLS authentication error", what, err)
	}
	t.Logf("%s: refused: %v", what, err)
}

// accepted asserts that a GET with the certificate is served.
func accepted(t *testing.T, ctx context.Context, from *labnet.NS, what, url string, cert *pki.KeyPair, roots *x509.Certificate) {
	t.Helper()
	if code, err := tlsGet(ctx, from, url, cert, roots); err != nil || code != http.StatusOK {
		t.Errorf("%s: HTTP %d, %v, want 200", what, code, err)
	}
}

// startTestCluster starts three members on subnet (198.19.x.0/24) with the
// store's etcd PKI and waits until they are healthy.
func startTestCluster(t *testing.T, bin string, subnet string, store func(*pki.Store, []inventory.Member)) (*memberProcs, []inventory.Member) {
	t.Helper()
	var members []inventory.Member
	for i := 1; i <= 3; i++ {
		members = append(members, inventory.Member{Name: fmt.Sprintf("m%d", i), Center: fmt.Sprintf("dc%d", i), Address: fmt.Sprintf("%s.%d", subnet, i)})
	}
	var pm []pki.EtcdMember
	for _, m := range members {
		pm = append(pm, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	dir := t.TempDir()
	s := &pki.Store{Dir: filepath.Join(dir, "pki")}
	if store != nil {
		store(s, members)
	}
	certs, err := s.EnsureEtcd(pm)
	if err != nil {
		t.Fatal(err)
	}
	n, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("removing the test network: %v", err)
		}
	})
	br, err := n.Bridge(netip.MustParsePrefix(subnet + ".254/24"))
	if err != nil {
		t.Fatal(err)
	}
	mp := &memberProcs{bin: bin, dir: dir, pki: certs,
		set: Settings{ClusterName: "peer-ca", Timers: inventory.Timers{HeartbeatMs: 100, ElectionTimeoutMs: 1000}, SharedPeerCA: certs.SharedPeerCA},
		ns:  map[string]*labnet.NS{}, procs: map[string]*memberProc{}}
	for _, m := range members {
		ns, err := n.Namespace("etcd")
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Attach(br, "eth0", netip.PrefixFrom(netip.MustParseAddr(m.Address), 24)); err != nil {
			t.Fatal(err)
		}
		mp.ns[m.Name] = ns
	}
	t.Cleanup(func() {
		for _, m := range members {
			mp.mu.Lock()
			p := mp.procs[m.Name]
			mp.mu.Unlock()
			if p != nil && t.Failed() {
				t.Logf("etcd %s log (tail):\n%s", m.Name, tailOf(p.log.String(), 1500))
			}
			mp.stop(m.Name)
		}
	})
	var initial []InitialMember
	for _, m := range members {
		initial = append(initial, InitialMember{m.Name, PeerURL(m.Address)})
	}
	for _, m := range members {
		if err := mp.start(m, initial, false); err != nil {
			t.Fatal(err)
		}
	}
	tc, err := TLSConfig(certs)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, m := range members {
		eps = append(eps, ClientURL(m.Address))
	}
	if mp.cli, err = NewClient(eps, tc, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mp.cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := mp.cli.WaitHealthy(ctx, members, 45*time.Second); err != nil {
		t.Fatalf("the three members did not become healthy: %v", err)
	}
	// It serves: a write through one member is read through another.
	if _, err := mp.cli.KV().Put(ctx, "peer-ca-test", subnet); err != nil {
		t.Fatalf("put: %v", err)
	}
	return mp, members
}

func etcdTestBinary(t *testing.T) string {
	t.Helper()
	testenv.Need(t, labnet.Available())
	bin, err := filepath.Abs("../../.cache/artifacts/" + artifacts.DefaultName("etcd"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.RequireFile(t, "run make artifacts (builds the pinned etcd)", bin)
	return bin
}

func TestPeerCASplitAgainstEtcd(t *testing.T) {
	bin := etcdTestBinary(t)
	mp, members := startTestCluster(t, bin, "198.19.245", nil)
	p := mp.pki
	if p.SharedPeerCA || p.PeerCA.Cert.Equal(p.CA.Cert) {
		t.Fatal("a new store shares the peer CA")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m1, m2 := members[0], members[1]
	from := mp.ns[m1.Name]
	clientURL, peerURL := ClientURL(m2.Address)+"/version", PeerURL(m2.Address)+"/version"

	// The certificates work where they belong.
	accepted(t, ctx, from, "tricenter's client certificate on the client port", clientURL, p.Admin, p.CA.Cert)
	accepted(t, ctx, from, "kube-apiserver's client certificate on the client port", clientURL, p.APIServer, p.CA.Cert)
	accepted(t, ctx, from, "m1's peer certificate on m2's peer port", peerURL, p.Peer[m1.Name], p.PeerCA.Cert)

	// (a) A member's peer certificate is refused on another member's
	// client port (and on its own).
	refusedTLS(t, ctx, from, "m1's peer certificate on m2's client port", clientURL, p.Peer[m1.Name], p.CA.Cert)
	refusedTLS(t, ctx, from, "m1's peer certificate on its own client port", ClientURL(m1.Address)+"/version", p.Peer[m1.Name], p.CA.Cert)

	// (b) Certificates of the client CA cannot open a peer connection: not
	// the client certificates, not a member's server certificate.
	for what, kp := range map[string]*pki.KeyPair{
		"tricenter's client certificate":      p.Admin,
		"kube-apiserver's client certificate": p.APIServer,
		"m1's server certificate":             p.Server[m1.Name],
	} {
		refusedTLS(t, ctx, from, what+" on m2's peer port", peerURL, kp, p.PeerCA.Cert)
		refusedTLS(t, ctx, from, what+" on m2's raft stream", PeerURL(m2.Address)+"/raft/stream/message/"+fmt.Sprint(1), kp, p.PeerCA.Cert)
	}
	// A certificate of the peer CA without the peer common name is
	// refused too (--peer-cert-allowed-cn).
	odd, err := pki.Issue(p.PeerCA, pki.Request{CommonName: "not-a-peer", IPs: []net.IP{net.ParseIP(m1.Address)}, Usage: pki.Server | pki.Client}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	refusedTLS(t, ctx, from, "a peer-CA certificate with another common name on m2's peer port", peerURL, odd, p.PeerCA.Cert)

	// (c) The cluster formed over the peer CA and serves.
	for _, m := range members {
		st := mp.cli.Status(ctx, ClientURL(m.Address))
		if st.Error != "" || st.Leader == 0 {
			t.Errorf("member %s: leader %x, error %q", m.Name, st.Leader, st.Error)
		}
	}
	got, err := mp.cli.KV().Get(ctx, "peer-ca-test")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "198.19.245" {
		t.Fatalf("reading the test key back: %v %v", got, err)
	}
}

func TestSharedPeerCAStillWorksAgainstEtcd(t *testing.T) {
	bin := etcdTestBinary(t)
	mp, members := startTestCluster(t, bin, "198.19.246", func(s *pki.Store, ms []inventory.Member) { writeSharedEtcdStore(t, s, ms) })
	p := mp.pki
	if !p.SharedPeerCA || !p.PeerCA.Cert.Equal(p.CA.Cert) {
		t.Fatal("the store written before the split does not keep its shared CA")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m1, m2 := members[0], members[1]
	from := mp.ns[m1.Name]
	accepted(t, ctx, from, "m1's peer certificate on m2's peer port", PeerURL(m2.Address)+"/version", p.Peer[m1.Name], p.CA.Cert)
	accepted(t, ctx, from, "tricenter's client certificate on the client port", ClientURL(m2.Address)+"/version", p.Admin, p.CA.Cert)
	// What SharedPeerCA warns about: until a rotation, the client CA's
	// certificates open peer connections.
	accepted(t, ctx, from, "tricenter's client certificate on m2's peer port (shared CA)", PeerURL(m2.Address)+"/version", p.Admin, p.CA.Cert)
	env := string(RenderEnv(mp.set, m1))
	if strings.Contains(env, "ALLOWED_CN") || strings.Contains(env, PeerCAFile) {
		t.Errorf("the shared-CA settings name the peer CA or a common name:\n%s", env)
	}
}
