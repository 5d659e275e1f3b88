package acceptance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// checkEtcdSecurity checks, on the running lab, one etcd member (the
// placement's first): the process runs as the etcd user, its data
// directory is 0700 etcd:etcd with nothing inside owned by another user,
// its TLS files are 0640 root:etcd, the running process's settings (etcd
// reads them from its environment, /etc/etcd/etcd.env) trust a peer CA
// other than the client CA and name the allowed peer common name, and the
// member's peer certificate is refused on the client port (the client
// certificate, through the same path, is served).
func checkEtcdSecurity(t *testing.T, ctx context.Context, e *installer.Engine) {
	t.Helper()
	member := e.Placement().Etcd.Members[0]
	m := e.Manager(true)
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: []string{member.Name}})
	if err != nil {
		t.Fatal(err)
	}
	h := hosts[0]
	query := func(cmd string) string {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := h.Query(qctx, cmd)
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", member.Name, cmd, err, out)
		}
		return strings.TrimSpace(out)
	}

	// The process and its user.
	if u := query("stat -c %U /proc/$(pidof etcd)"); u != etcd.User {
		t.Errorf("etcd on %s runs as %q, want %s", member.Name, u, etcd.User)
	}
	if pw := query("getent passwd " + etcd.User); !strings.HasSuffix(pw, ":/usr/sbin/nologin") {
		t.Errorf("the etcd user on %s: %s, want a system user without a login shell", member.Name, pw)
	}

	// The data directory and the TLS files.
	if got := query("stat -c '%a %U:%G' " + etcd.DataDir); got != "700 "+etcd.DataOwner {
		t.Errorf("%s on %s: %s, want 700 %s", etcd.DataDir, member.Name, got, etcd.DataOwner)
	}
	if other := query("find " + etcd.DataDir + " ! -user " + etcd.User + " | head -5"); other != "" {
		t.Errorf("files under %s on %s not owned by %s:\n%s", etcd.DataDir, member.Name, etcd.User, other)
	}
	files := []string{etcd.CAFile, etcd.PeerCAFile, etcd.PeerCertFile, etcd.PeerKeyFile, etcd.ServerCertFile, etcd.ServerKeyFile}
	for _, l := range strings.Split(query("stat -c '%a %U:%G %n' "+strings.Join(files, " ")), "\n") {
		if want := fmt.Sprintf("%o %s ", etcd.PKIFileMode, etcd.PKIOwner); !strings.HasPrefix(l, want) {
			t.Errorf("%s: %s, want %s", member.Name, l, want)
		}
	}

	// The running process's settings.
	env := map[string]string{}
	for _, kv := range strings.Split(query(`tr '\0' '\n' </proc/$(pidof etcd)/environ | grep '^ETCD_'`), "\n") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	clientCA, peerCA := env["ETCD_TRUSTED_CA_FILE"], env["ETCD_PEER_TRUSTED_CA_FILE"]
	if clientCA == "" || peerCA == "" || clientCA == peerCA {
		t.Errorf("etcd on %s trusts %q on the client port and %q on the peer port: want two CAs", member.Name, clientCA, peerCA)
	} else if sums := strings.Fields(query("sha256sum " + clientCA + " " + peerCA + " | cut -d' ' -f1")); len(sums) != 2 || sums[0] == sums[1] {
		t.Errorf("the client and peer CA files of etcd on %s hold the same CA", member.Name)
	}
	if cn := env["ETCD_PEER_CERT_ALLOWED_CN"]; cn != pki.EtcdPeerCN {
		t.Errorf("etcd on %s runs with ETCD_PEER_CERT_ALLOWED_CN=%q, want %s", member.Name, cn, pki.EtcdPeerCN)
	}
	for _, k := range []string{"ETCD_CLIENT_CERT_AUTH", "ETCD_PEER_CLIENT_CERT_AUTH"} {
		if env[k] != "true" {
			t.Errorf("etcd on %s runs with %s=%q", member.Name, k, env[k])
		}
	}

	// The member's peer certificate on its client port.
	p, err := e.EtcdPKI(false)
	if err != nil {
		t.Fatal(err)
	}
	if p.SharedPeerCA {
		t.Errorf("the lab's state shares the etcd peer CA with the client CA")
	}
	get := func(cert *pki.KeyPair) (int, error) {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			return 0, err
		}
		pool := x509.NewCertPool()
		pool.AddCert(p.CA.Cert)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return e.Dial(ctx, network, addr) },
			// Presented whatever CAs the member names.
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}}}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, etcd.ClientURL(member.Address)+"/version", nil)
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
	if code, err := get(p.Admin); err != nil || code != http.StatusOK {
		t.Fatalf("tricenter's client certificate on the client port of %s: HTTP %d, %v", member.Name, code, err)
	}
	code, err := get(p.Peer[member.Name])
	switch {
	case err == nil:
		t.Errorf("the peer certificate of %s is served on its client port (HTTP %d)", member.Name, code)
	case !strings.Contains(err.Error(), "tls: unknown certificate authority") && !strings.Contains(err.Error(), "tls: bad certificate"):
		t.Errorf("the peer certificate of %s on its client port: %v, want a refused TLS handshake", member.Name, err)
	}
}
