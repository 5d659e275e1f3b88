package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// smokeEnv is what checkSecurity needs from the smoke test's control
// plane.
type smokeEnv struct {
	ns        *labnet.NS
	r         *run
	kubectl   string // kubectl with the admin kubeconfig, and a space
	etcdctl   string
	etcdPKI   string // the etcd CA (ca.crt) of the member
	address   netip.Addr
	adminCert *pki.KeyPair
}

// run runs cmd in the namespace and returns its stdout and stderr
// together, and its error.
func (e smokeEnv) run(ctx context.Context, cmd string) (string, error) {
	var out bytes.Buffer
	c := e.ns.Command(ctx, "sh", "-c", cmd)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return strings.TrimSpace(out.String()), err
}

// client is an HTTPS client dialling from inside the namespace, trusting
// the cluster CA (nil tc) or with tc.
func (e smokeEnv) client(tc *tls.Config) *http.Client {
	if tc == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(e.r.pki.CA.CertPEM)
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return e.ns.DialContext(ctx, d, network, addr)
		}}}
}

// handshake opens a TLS connection to addr from inside the namespace with
// the versions and TLS 1.2 suites given; it returns the suite agreed.
func (e smokeEnv) handshake(ctx context.Context, addr string, minV, maxV uint16, suites []uint16) (uint16, error) {
	c, err := e.ns.DialContext(ctx, &net.Dialer{Timeout: 5 * time.Second}, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	//nolint:gosec // the test offers old versions and weak suites on purpose: the server must refuse them
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: minV, MaxVersion: maxV, CipherSuites: suites})
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return 0, err
	}
	return tc.ConnectionState().CipherSuite, nil
}

// checkSecurity checks the security defaults on the running control
// plane: what the lab's acceptance test checks on real servers.
func checkSecurity(t *testing.T, ctx context.Context, e smokeEnv) {
	t.Helper()
	api := "https://" + net.JoinHostPort(e.address.String(), strconv.Itoa(APIServerPort))

	// Anonymous requests reach the health endpoints only.
	anon := e.client(nil)
	for path, want := range map[string]int{
		"/livez": 200, "/readyz": 200, "/healthz": 200, "/readyz?verbose": 200,
		// Conditions match whole paths: the per-check endpoints need
		// credentials.
		"/readyz/etcd": 401, "/api": 401, "/apis": 401, "/version": 401, "/metrics": 401,
		"/api/v1/namespaces/default/secrets": 401,
	} {
		resp, err := anon.Get(api + path)
		if err != nil {
			t.Errorf("anonymous GET %s: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("anonymous GET %s: HTTP %d, want %d", path, resp.StatusCode, want)
		}
	}

	// TLS: 1.2 or later, ECDHE with AEAD suites only, on all three
	// components.
	for _, c := range []struct{ name, addr string }{
		{APIServer, net.JoinHostPort(e.address.String(), strconv.Itoa(APIServerPort))},
		{ControllerManager, net.JoinHostPort("127.0.0.1", strconv.Itoa(ControllerManagerPort))},
		{Scheduler, net.JoinHostPort("127.0.0.1", strconv.Itoa(SchedulerPort))},
	} {
		if _, err := e.handshake(ctx, c.addr, tls.VersionTLS10, tls.VersionTLS11, nil); err == nil {
			t.Errorf("%s accepts TLS 1.1", c.name)
		}
		// Each pair covers an ECDSA certificate (kube-apiserver's) and an
		// RSA one (the self-signed certificates the controller-manager
		// and the scheduler make for themselves).
		for _, weak := range [][]uint16{
			{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
			{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA},
			{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384},
		} {
			if got, err := e.handshake(ctx, c.addr, tls.VersionTLS12, tls.VersionTLS12, weak); err == nil {
				t.Errorf("%s accepts TLS 1.2 with %s", c.name, tls.CipherSuiteName(got))
			}
		}
		strong := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		if got, err := e.handshake(ctx, c.addr, tls.VersionTLS12, tls.VersionTLS12, strong); err != nil || !slices.Contains(strong, got) {
			t.Errorf("%s with TLS 1.2 and ECDHE AES-128-GCM: %v (suite %s)", c.name, err, tls.CipherSuiteName(got))
		}
		if _, err := e.handshake(ctx, c.addr, tls.VersionTLS13, tls.VersionTLS13, nil); err != nil {
			t.Errorf("%s refuses TLS 1.3: %v", c.name, err)
		}
	}

	// No profiling endpoints, even for an administrator.
	adminTLS, err := tls.X509KeyPair(e.adminCert.CertPEM, e.adminCert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	admin := e.client(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{adminTLS}, //nolint:gosec // KCM and scheduler serve self-signed certificates
		MinVersion: tls.VersionTLS12})
	for _, u := range []string{api, "https://127.0.0.1:" + strconv.Itoa(ControllerManagerPort),
		"https://127.0.0.1:" + strconv.Itoa(SchedulerPort)} {
		resp, err := admin.Get(u + "/debug/pprof/")
		if err != nil {
			t.Errorf("GET %s/debug/pprof/: %v", u, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s/debug/pprof/ as an administrator: HTTP %d, want 404 (profiling off)", u, resp.StatusCode)
		}
	}

	// Secrets are encrypted in etcd with the state's first key;
	// ConfigMaps are not (encryption of ConfigMaps is off by default).
	const marker = "tricenter-plaintext-marker"
	for _, cmd := range []string{
		e.kubectl + "-n default create secret generic smoke-secret --from-literal=marker=" + marker,
		e.kubectl + "-n default create configmap smoke-cm --from-literal=marker=" + marker,
	} {
		if out, err := e.run(ctx, cmd); err != nil {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
	}
	etcdGet := func(key string) string {
		t.Helper()
		out, err := e.run(ctx, fmt.Sprintf("%s --endpoints=%s --cacert=%s/ca.crt --cert=%s --key=%s get %s --print-value-only",
			e.etcdctl, etcd.ClientURL(e.address.String()), e.etcdPKI, e.r.path(EtcdClientCert), e.r.path(EtcdClientKey), key))
		if err != nil {
			t.Fatalf("etcdctl get %s: %v: %s", key, err, out)
		}
		return out
	}
	wantPrefix := "k8s:enc:" + encryption.Secretbox + ":v1:" + e.r.ring.Keys[0].Name + ":"
	if v := etcdGet("/registry/secrets/default/smoke-secret"); !strings.HasPrefix(v, wantPrefix) || strings.Contains(v, marker) {
		t.Errorf("the Secret in etcd starts with %q, want %q and ciphertext", v[:min(len(v), len(wantPrefix))], wantPrefix)
	}
	if v := etcdGet("/registry/configmaps/default/smoke-cm"); !strings.Contains(v, marker) {
		t.Errorf("the ConfigMap in etcd is not plain: %.40q", v)
	}
	if out, err := e.run(ctx, e.kubectl+"-n default get secret smoke-secret -o jsonpath='{.data.marker}' | base64 -d"); err != nil || out != marker {
		t.Errorf("reading the Secret back: %q, %v", out, err)
	}

	// Pod Security: baseline enforced in default, restricted warned;
	// kube-system exempt.
	privileged := func(ns, name string) string {
		return e.kubectl + "-n " + ns + ` create -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: ` + name + `}
spec:
  automountServiceAccountToken: false
  hostNetwork: true
  containers: [{name: c, image: registry.invalid/none:1, securityContext: {privileged: true}}]
EOF`
	}
	plain := e.kubectl + `-n default create -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: smoke-plain}
spec:
  automountServiceAccountToken: false
  containers: [{name: c, image: registry.invalid/none:1}]
EOF`
	if out, err := e.run(ctx, privileged("default", "smoke-privileged")); err == nil || !strings.Contains(out, `violates PodSecurity "baseline:latest"`) {
		t.Errorf("a privileged pod in default: %v: %s (want refused by PodSecurity baseline)", err, out)
	}
	if out, err := e.run(ctx, plain); err != nil || !strings.Contains(out, `would violate PodSecurity "restricted:latest"`) {
		t.Errorf("a baseline pod in default: %v: %s (want created, with a restricted warning)", err, out)
	}
	if out, err := e.run(ctx, privileged("kube-system", "smoke-exempt")); err != nil {
		t.Errorf("a privileged pod in kube-system (exempt): %v: %s", err, out)
	}

	// RBAC changes are logged with their objects.
	if out, err := e.run(ctx, e.kubectl+"create clusterrolebinding smoke-view --clusterrole=view --user=smoke-user"); err != nil {
		t.Fatalf("creating a binding: %v: %s", err, out)
	}
	checkAuditLog(t, ctx, e, marker)
}

// auditEvent is the part of an audit.k8s.io/v1 Event the test reads.
type auditEvent struct {
	Level      string `json:"level"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject  json.RawMessage   `json:"requestObject"`
	ResponseObject json.RawMessage   `json:"responseObject"`
	Annotations    map[string]string `json:"annotations"`
}

// checkAuditLog reads the audit log: the policy's levels for Secrets, RBAC
// and pods, Pod Security's annotations, no RequestReceived stage, no
// health polls, no Secret value; the directory 0700 and the log 0600.
func checkAuditLog(t *testing.T, ctx context.Context, e smokeEnv, marker string) {
	t.Helper()
	var events []auditEvent
	var raw []byte
	find := func(f func(ev auditEvent) bool) *auditEvent {
		for i := range events {
			if f(events[i]) {
				return &events[i]
			}
		}
		return nil
	}
	object := func(resource, ns, name, verb string) func(ev auditEvent) bool {
		return func(ev auditEvent) bool {
			return ev.ObjectRef != nil && ev.ObjectRef.Resource == resource && ev.ObjectRef.Namespace == ns &&
				ev.ObjectRef.Name == name && ev.Verb == verb && ev.Stage == "ResponseComplete"
		}
	}
	// The log is written as requests complete: wait for the last one.
	poll(t, ctx, "the binding's audit event", func() (bool, string) {
		var err error
		raw, err = os.ReadFile(e.r.path(AuditLog))
		if err != nil {
			return false, err.Error()
		}
		events = events[:0]
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var ev auditEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				return false, fmt.Sprintf("audit line %.80q: %v", sc.Text(), err)
			}
			events = append(events, ev)
		}
		return find(object("clusterrolebindings", "", "smoke-view", "create")) != nil, fmt.Sprintf("%d events", len(events))
	})
	// What the log is made of, biggest first (the policy keeps the
	// system's own high-rate traffic out).
	count := map[string]int{}
	for _, ev := range events {
		what := ev.RequestURI
		if ev.ObjectRef != nil {
			what = ev.ObjectRef.Resource
		}
		count[ev.User.Username+" "+ev.Verb+" "+what+" "+ev.Level]++
	}
	top := slices.SortedFunc(maps.Keys(count), func(a, b string) int { return count[b] - count[a] })
	for i, k := range top[:min(len(top), 8)] {
		top[i] = fmt.Sprintf("%d× %s", count[k], k)
	}
	t.Logf("audit log: %d events, %d bytes; most: %s", len(events), len(raw), strings.Join(top[:min(len(top), 8)], "; "))
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{e.r.path(AuditLogDir), 0o700}, {e.r.path(AuditLog), 0o600}} {
		if st, err := os.Stat(p.path); err != nil || st.Mode().Perm() != p.mode {
			t.Errorf("%s: %v (mode %v), want %o", p.path, err, st.Mode().Perm(), p.mode)
		}
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Error("the audit log holds a Secret's (or ConfigMap's) value")
	}
	for _, ev := range events {
		if ev.Stage == "RequestReceived" {
			t.Errorf("a RequestReceived event is logged: %s %s", ev.Verb, ev.RequestURI)
			break
		}
		if strings.HasPrefix(ev.RequestURI, "/readyz") || strings.HasPrefix(ev.RequestURI, "/livez") || strings.HasPrefix(ev.RequestURI, "/healthz") {
			t.Errorf("a health poll is logged: %s by %s", ev.RequestURI, ev.User.Username)
			break
		}
	}
	for _, c := range []struct {
		what          string
		match         func(ev auditEvent) bool
		level         string
		request, resp bool
	}{
		{"Secret create", object("secrets", "default", "smoke-secret", "create"), auditMetadata, false, false},
		{"ConfigMap create", object("configmaps", "default", "smoke-cm", "create"), auditMetadata, false, false},
		{"Secret get", object("secrets", "default", "smoke-secret", "get"), auditMetadata, false, false},
		{"ClusterRoleBinding create", object("clusterrolebindings", "", "smoke-view", "create"), auditRequestResponse, true, true},
		{"Pod create", object("pods", "default", "smoke-plain", "create"), auditMetadata, false, false},
	} {
		ev := find(c.match)
		if ev == nil {
			t.Errorf("%s: no audit event", c.what)
			continue
		}
		if ev.Level != c.level || (len(ev.RequestObject) > 0) != c.request || (len(ev.ResponseObject) > 0) != c.resp {
			t.Errorf("%s: level %s, request object %v, response object %v; want %s, %v, %v", c.what, ev.Level,
				len(ev.RequestObject) > 0, len(ev.ResponseObject) > 0, c.level, c.request, c.resp)
		}
	}
	if ev := find(object("pods", "default", "smoke-privileged", "create")); ev == nil {
		t.Error("the refused pod: no audit event")
	} else if ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusForbidden ||
		ev.Annotations["pod-security.kubernetes.io/enforce-policy"] != "baseline:latest" {
		t.Errorf("the refused pod: status %+v, annotations %v", ev.ResponseStatus, ev.Annotations)
	}
	if ev := find(object("pods", "default", "smoke-plain", "create")); ev != nil && ev.Annotations["pod-security.kubernetes.io/audit-violations"] == "" {
		t.Errorf("the baseline pod's event has no restricted audit violation: %v", ev.Annotations)
	}
}
