package acceptance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// checkLeafRenewal renews every leaf certificate (tricenter certs renew
// --all's engine call) while the API is probed through its VIP from the
// core router every 100 ms and etcd takes writes: no probe may fail, no
// acknowledged write be lost; afterwards every served certificate — the
// API through the VIP and on each control-plane server, each etcd
// member's client port, a kubelet's 10250 — was issued after the renewal
// started, and a re-apply changes nothing.
func checkLeafRenewal(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine) {
	t.Helper()
	plan, err := e.PlanRenewal(ctx, installer.RenewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Certificates) == 0 || len(plan.Restarts) == 0 {
		t.Fatalf("the renewal plan renews %d certificates and restarts %d units: want every leaf and restarts",
			len(plan.Certificates), len(plan.Restarts))
	}
	probes := startUpgradeProbes(t, ctx, k, e, "")
	start := time.Now()
	res, err := e.RenewCertificates(ctx, installer.RenewOptions{})
	took := time.Since(start)
	lost, perr := probes.finish(ctx, e)
	if err != nil {
		t.Fatalf("renewing the leaf certificates: %v", err)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("%d leaf certificates renewed in %v (VIP held on %s); earliest expiry now %s (%s):\n  %s\n  %s; %d acknowledged writes, %d lost",
		res.Renewed, took.Round(time.Second), strings.Join(res.Held, ", "), res.EarliestExpiry.UTC().Format(time.RFC3339), res.EarliestWhat,
		probes.API.String(), probes.Etcd.String(), len(probes.acked), lost)
	if w := probes.windows(); w != "" {
		t.Logf("the probes' failures:\n%s", w)
	}
	if probes.API.Failed > 0 || lost > 0 {
		t.Errorf("the API failed %d probes through the VIP and %d acknowledged etcd writes were lost during the renewal", probes.API.Failed, lost)
	}
	if res.Renewed != len(res.Certificates) || res.Renewed < len(plan.Certificates) {
		t.Errorf("renewed %d of %d certificates (the plan had %d)", res.Renewed, len(res.Certificates), len(plan.Certificates))
	}

	// What the servers serve now.
	ep, err := e.EtcdPKI(false)
	if err != nil {
		t.Fatal(err)
	}
	client, err := tls.X509KeyPair(ep.Admin.CertPEM, ep.Admin.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	type endpoint struct {
		name, addr string
		client     []tls.Certificate
	}
	eps := []endpoint{{name: "API VIP", addr: net.JoinHostPort(e.IPs().APIVIP.String(), strconv.Itoa(installer.APIPort))}}
	for _, m := range e.Placement().ControlPlane {
		eps = append(eps, endpoint{name: "kube-apiserver " + m.Name, addr: net.JoinHostPort(m.Address, strconv.Itoa(installer.APIPort))})
	}
	for _, m := range e.Placement().Etcd.Members {
		eps = append(eps, endpoint{name: "etcd client port " + m.Name, addr: net.JoinHostPort(m.Address, "2379"), client: []tls.Certificate{client}})
	}
	hosts := e.Cluster().Hosts()
	kubelet := hosts[len(hosts)-1]
	eps = append(eps, endpoint{name: "kubelet " + kubelet.Name, addr: net.JoinHostPort(kubelet.Addr().String(), "10250")})
	for _, x := range eps {
		c, err := servedCertificate(ctx, e, x.addr, x.client)
		if err != nil {
			t.Errorf("%s (%s): %v", x.name, x.addr, err)
			continue
		}
		if pki.IssuedBefore(c, res.Started) {
			t.Errorf("%s (%s) serves %q issued %s (NotBefore %s), before the renewal started at %s",
				x.name, x.addr, c.Subject.CommonName, pki.IssuedAt(c).UTC().Format(time.RFC3339),
				c.NotBefore.UTC().Format(time.RFC3339), res.Started.UTC().Format(time.RFC3339))
		}
	}

	again, err := e.Apply(ctx, installer.Options{})
	if err != nil {
		t.Fatalf("apply after the renewal: %v", err)
	}
	if !again.Converged() {
		t.Errorf("the apply after the renewal changed things: hosts %v, API %v", again.Changes, again.APIChanges)
	}
}

// servedCertificate is the leaf certificate addr serves now (a TLS
// handshake through the engine's dialer, with client certificates when
// the server asks for them). The certificate is read, not verified: the
// check is when it was issued.
func servedCertificate(ctx context.Context, e *installer.Engine, addr string, client []tls.Certificate) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := e.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	var served *x509.Certificate
	conn := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: client,
		InsecureSkipVerify: true, //nolint:gosec // the certificate is read for its dates, not trusted
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return errors.New("no certificate served")
			}
			c, err := x509.ParseCertificate(rawCerts[0])
			served = c
			return err
		}})
	herr := conn.HandshakeContext(ctx)
	_ = conn.Close()
	if served != nil {
		return served, nil
	}
	return nil, fmt.Errorf("TLS handshake: %w", herr)
}
