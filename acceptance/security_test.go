package acceptance

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// checkSecurityDefaults checks, on the running lab, the automated CIS
// controls tricenter sets up: each control-plane component's flags as its
// running process has them, the modes and owners of the files they read,
// the running kubelet's configuration (its /configz) and files on a
// worker, anonymous access through the API VIP (health endpoints only),
// Pod Security admission in a default namespace, and a Secret stored
// encrypted in etcd.
func checkSecurityDefaults(t *testing.T, ctx context.Context, e *installer.Engine, worker string) {
	t.Helper()
	cp := e.Placement().ControlPlane[0].Name
	m := e.Manager(true)
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: []string{cp, worker}})
	if err != nil {
		t.Fatal(err)
	}
	query := func(host, cmd string) string {
		t.Helper()
		for _, h := range hosts {
			if h.Name == host {
				qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				out, err := h.Query(qctx, cmd)
				if err != nil {
					t.Fatalf("%s: %s: %v\n%s", host, cmd, err, out)
				}
				return out
			}
		}
		t.Fatalf("no host %s", host)
		return ""
	}

	// Flags, from the running processes.
	cmdline := func(proc string) string {
		return query(cp, fmt.Sprintf(`tr '\0' ' ' </proc/$(pidof %s)/cmdline`, proc))
	}
	tlsFlags := []string{"--profiling=false", "--tls-min-version=VersionTLS12", "--tls-cipher-suites=TLS_ECDHE_"}
	want := map[string][]string{
		"kube-apiserver": append([]string{"--authentication-config=" + controlplane.AuthenticationConfig,
			"--audit-policy-file=" + controlplane.AuditPolicy, "--audit-log-path=" + controlplane.AuditLog,
			"--encryption-provider-config=" + controlplane.EncryptionConfig, "--encryption-provider-config-automatic-reload=true",
			"--admission-control-config-file=" + controlplane.AdmissionConfig, "--service-account-extend-token-expiration=false",
			"--shutdown-send-retry-after=true"}, tlsFlags...),
		"kube-controller-manager": tlsFlags,
		"kube-scheduler":          tlsFlags,
	}
	for proc, flags := range want {
		line := cmdline(proc)
		for _, f := range flags {
			if !strings.Contains(line, f) {
				t.Errorf("%s on %s runs without %s: %s", proc, cp, f, line)
			}
		}
		if strings.Contains(line, "--anonymous-auth") || strings.Contains(line, "--profiling=true") {
			t.Errorf("%s on %s: %s", proc, cp, line)
		}
	}

	// File modes and owners.
	modes := func(host string, want string, paths ...string) {
		out := query(host, "stat -c '%a %U:%G %n' "+strings.Join(paths, " "))
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, want+" ") {
				t.Errorf("%s: %s, want %s", host, l, want)
			}
		}
	}
	modes(cp, "600 root:root", controlplane.AuditPolicy, controlplane.AuthenticationConfig, controlplane.AdmissionConfig,
		controlplane.EncryptionConfig, controlplane.AuditLog)
	modes(cp, "700 root:root", controlplane.AuditLogDir)
	for _, host := range []string{cp, worker} {
		modes(host, "600 root:root", node.KubeletUnitFile, node.KubeletConfig, node.KubeletKubeconfig, node.KubeletKey,
			node.KubeProxyConfig)
	}

	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	// The running kubelet's configuration.
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/" + worker + "/proxy/configz").DoRaw(ctx)
	if err != nil {
		t.Fatalf("configz of %s: %v", worker, err)
	}
	var cz struct {
		KC struct {
			SeccompDefault bool   `json:"seccompDefault"`
			PodPidsLimit   int64  `json:"podPidsLimit"`
			ReadOnlyPort   int    `json:"readOnlyPort"`
			TLSMinVersion  string `json:"tlsMinVersion"`
			Authentication struct {
				Anonymous struct {
					Enabled bool `json:"enabled"`
				} `json:"anonymous"`
			} `json:"authentication"`
			Authorization struct {
				Mode string `json:"mode"`
			} `json:"authorization"`
		} `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(raw, &cz); err != nil {
		t.Fatalf("configz of %s: %v: %s", worker, err, raw)
	}
	if k := cz.KC; !k.SeccompDefault || k.PodPidsLimit != node.DefaultPodPidsLimit || k.ReadOnlyPort != 0 || k.TLSMinVersion != "VersionTLS12" ||
		k.Authentication.Anonymous.Enabled || k.Authorization.Mode != "Webhook" {
		t.Errorf("the kubelet on %s runs with %+v", worker, k)
	}

	// Anonymous requests through the VIP: the health endpoints only.
	vip := net.JoinHostPort(e.IPs().APIVIP.String(), fmt.Sprint(installer.APIPort))
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec G402 -- only the status code is read
	for path, code := range map[string]int{"/readyz": 200, "/livez": 200, "/healthz": 200, "/api": 401, "/version": 401} {
		resp, err := anon.Get("https://" + vip + path)
		if err != nil {
			t.Errorf("anonymous %s: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("anonymous GET %s through the VIP: %d, want %d", path, resp.StatusCode, code)
		}
	}

	// Pod Security: baseline enforced in default, kube-system exempt
	// (server-side dry runs: admission runs, nothing is created).
	priv := func(ns string) error {
		yes := true
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tricenter-psa-check", Namespace: ns},
			Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Image: installer.ProbeImage,
				SecurityContext: &corev1.SecurityContext{Privileged: &yes}}}}}
		_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	if err := priv("default"); err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("a privileged hostNetwork pod in default: %v, want refused by PodSecurity baseline", err)
	}
	if err := priv("kube-system"); err != nil {
		t.Errorf("a privileged pod in kube-system (exempt): %v", err)
	}

	// A Secret is ciphertext in etcd.
	marker := fmt.Sprintf("tricenter-marker-%d", time.Now().UnixNano())
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tricenter-encryption-check", Namespace: "default"},
		StringData: map[string]string{"k": marker}}
	_ = cs.CoreV1().Secrets("default").Delete(ctx, sec.Name, metav1.DeleteOptions{})
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cs.CoreV1().Secrets("default").Delete(context.WithoutCancel(ctx), sec.Name, metav1.DeleteOptions{})
	}()
	resp, err := etcdGet(ctx, e, "/registry/secrets/default/"+sec.Name)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading the Secret from etcd: %v (%d keys)", err, len(resp.Kvs))
	}
	v := string(resp.Kvs[0].Value)
	if !strings.HasPrefix(v, "k8s:enc:secretbox:v1:") || strings.Contains(v, marker) {
		t.Errorf("the Secret in etcd is not encrypted: it starts %q", v[:min(len(v), 40)])
	}
	// Its value is in no audit log.
	if out := query(cp, "grep -c "+marker+" "+controlplane.AuditLog+" || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("the Secret's value is in %s on %s (%s lines)", controlplane.AuditLog, cp, strings.TrimSpace(out))
	}
	t.Logf("security defaults on %s and %s: flags, file modes, kubelet configz, anonymous access, Pod Security, Secrets encrypted (%s…)",
		cp, worker, v[:min(len(v), len("k8s:enc:secretbox:v1:key-1:"))])
}

// checkKeyRotation rotates the Secrets encryption key (tricenter secrets
// rotate-key's engine call) while the API is probed through its VIP from
// the core router and etcd takes writes: no probe may fail, no
// acknowledged write be lost, no kube-apiserver restart, and afterwards
// the state and every Secret in etcd carry the new key only.
func checkKeyRotation(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine) {
	t.Helper()
	cp := e.Placement().ControlPlane
	m := e.Manager(true)
	defer m.Close()
	var names []string
	for _, s := range cp {
		names = append(names, s.Name)
	}
	hosts, err := m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		t.Fatal(err)
	}
	pids := func() map[string]string {
		out := map[string]string{}
		for _, h := range hosts {
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			s, err := h.Query(qctx, "systemctl show -p MainPID --value kube-apiserver")
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			out[h.Name] = strings.TrimSpace(s)
		}
		return out
	}
	before := pids()
	// A Secret written before the rotation (the cluster may hold none).
	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("tricenter-rotation-marker-%d", time.Now().UnixNano())
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tricenter-rotation-check", Namespace: "default"},
		StringData: map[string]string{"k": marker}}
	_ = cs.CoreV1().Secrets("default").Delete(ctx, sec.Name, metav1.DeleteOptions{})
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cs.CoreV1().Secrets("default").Delete(context.WithoutCancel(ctx), sec.Name, metav1.DeleteOptions{})
	}()
	probes := startUpgradeProbes(t, ctx, k, e, "")
	start := time.Now()
	res, err := e.RotateKey(ctx, installer.RotateKeyOptions{})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("rotating the Secrets encryption key: %v", err)
	}
	lost, err := probes.finish(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Secrets encryption key rotated (%s → %s) in %v:\n  %s\n  %s; %d acknowledged writes, %d lost",
		strings.Join(res.Keys, ","), res.Key, took.Round(time.Second), probes.API.String(), probes.Etcd.String(), len(probes.acked), lost)
	if w := probes.windows(); w != "" {
		t.Logf("the probes' failures:\n%s", w)
	}
	if probes.API.Failed > 0 || lost > 0 {
		t.Errorf("the API failed %d probes through the VIP and %d acknowledged etcd writes were lost during the rotation", probes.API.Failed, lost)
	}
	if after := pids(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("kube-apiserver restarted during the rotation: main pids %v, then %v", before, after)
	}
	kv, err := etcdGet(ctx, e, "/registry/secrets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	prefix := "k8s:enc:secretbox:v1:" + res.Key + ":"
	stale, found := 0, false
	for _, x := range kv.Kvs {
		if !strings.HasPrefix(string(x.Value), prefix) || strings.Contains(string(x.Value), marker) {
			stale++
		}
		found = found || string(x.Key) == "/registry/secrets/default/"+sec.Name
	}
	if stale > 0 || !found {
		t.Errorf("%d of %d Secrets in etcd are not encrypted with %s (the one written before the rotation found: %v)", stale, len(kv.Kvs), res.Key, found)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, sec.Name, metav1.GetOptions{})
	if err != nil || string(got.Data["k"]) != marker {
		t.Errorf("the Secret written before the rotation does not read back its value (%v)", err)
	}
	for _, h := range hosts {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := h.Query(qctx, "grep -c 'name: key-' "+controlplane.EncryptionConfig)
		cancel()
		if err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("%s: %s holds %s keys (%v), want the new one only", h.Name, controlplane.EncryptionConfig, strings.TrimSpace(out), err)
		}
	}
}

// etcdGet reads key from the cluster's etcd as stored (raw values, what
// kube-apiserver wrote), through the engine's client.
func etcdGet(ctx context.Context, e *installer.Engine, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ep, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	ec, err := e.EtcdClient(ep)
	if err != nil {
		return nil, err
	}
	defer ec.Close()
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return ec.KV().Get(gctx, key, opts...)
}
