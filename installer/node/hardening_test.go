package node

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	cliflag "k8s.io/component-base/cli/flag"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

// renderKubelet renders w1's kubelet configuration in profile prof and
// decodes it strictly, as the kubelet reads it.
func renderKubelet(t *testing.T, prof Profile) ([]byte, kubeletv1beta1.KubeletConfiguration) {
	t.Helper()
	c, ips := loadCluster(t)
	if prof == ProfileNspawn {
		c.Spec.Kubernetes.FailCgroupV1 = ptr(false)
	}
	p, err := KubeletParamsFor(c, host(t, c, "w1"), ips, prof)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RenderKubeletConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &kc); err != nil {
		t.Fatalf("kubelet config (%s) does not decode strictly: %v\n%s", prof, err, b)
	}
	return b, kc
}

// Both profiles carry the CIS section 4.2 settings; only
// protectKernelDefaults differs, because an nspawn machine cannot set its
// kernel's settings.
func TestKubeletConfigHardening(t *testing.T) {
	for _, prof := range []Profile{ProfileBareMetal, ProfileNspawn} {
		t.Run(string(prof), func(t *testing.T) {
			raw, kc := renderKubelet(t, prof)
			checks := []struct {
				what      string
				got, want any
			}{
				{"authentication.anonymous.enabled", kc.Authentication.Anonymous.Enabled != nil && !*kc.Authentication.Anonymous.Enabled, true},
				{"authentication.webhook.enabled", kc.Authentication.Webhook.Enabled != nil && *kc.Authentication.Webhook.Enabled, true},
				{"authorization.mode", kc.Authorization.Mode, kubeletv1beta1.KubeletAuthorizationModeWebhook},
				{"readOnlyPort", kc.ReadOnlyPort, int32(0)},
				{"seccompDefault", kc.SeccompDefault != nil && *kc.SeccompDefault, true},
				{"podPidsLimit", kc.PodPidsLimit != nil && *kc.PodPidsLimit == DefaultPodPidsLimit, true},
				{"tlsMinVersion", kc.TLSMinVersion, "VersionTLS12"},
				{"tlsCipherSuites", strings.Join(kc.TLSCipherSuites, ","), strings.Join(KubeletTLSCipherSuites, ",")},
				{"protectKernelDefaults", kc.ProtectKernelDefaults, prof == ProfileBareMetal},
				{"rotateCertificates", kc.RotateCertificates, false},
				{"serverTLSBootstrap", kc.ServerTLSBootstrap, false},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("%s = %v, want %v\n%s", ck.what, ck.got, ck.want, raw)
				}
			}
			// The file says readOnlyPort: 0 (the kubelet's flag default is
			// 10255): auditors read the file.
			if !strings.Contains("\n"+string(raw), "\nreadOnlyPort: 0\n") {
				t.Errorf("the file does not say readOnlyPort: 0:\n%s", raw)
			}
			for _, key := range []string{"rotateCertificates", "serverTLSBootstrap"} {
				if strings.Contains(string(raw), key) {
					t.Errorf("the file sets %s (tricenter renews the certificates):\n%s", key, raw)
				}
			}
		})
	}
	if DefaultPodPidsLimit < 1024 {
		t.Errorf("DefaultPodPidsLimit %d is too low for ordinary pods", DefaultPodPidsLimit)
	}
}

// The profiles differ in protectKernelDefaults and the nspawn settings
// only: every hardening field is the same.
func TestKubeletConfigProfilesDiffer(t *testing.T) {
	_, bm := renderKubelet(t, ProfileBareMetal)
	_, ns := renderKubelet(t, ProfileNspawn)
	if !bm.ProtectKernelDefaults || ns.ProtectKernelDefaults {
		t.Errorf("protectKernelDefaults bare-metal %v nspawn %v, want true and false", bm.ProtectKernelDefaults, ns.ProtectKernelDefaults)
	}
	if !ProtectKernelDefaults(ProfileBareMetal) || ProtectKernelDefaults(ProfileNspawn) {
		t.Error("ProtectKernelDefaults does not follow the profile")
	}
	if *bm.SeccompDefault != *ns.SeccompDefault || *bm.PodPidsLimit != *ns.PodPidsLimit || bm.TLSMinVersion != ns.TLSMinVersion ||
		!slices.Equal(bm.TLSCipherSuites, ns.TLSCipherSuites) || bm.ReadOnlyPort != ns.ReadOnlyPort {
		t.Errorf("a hardening setting differs between the profiles:\nbare-metal %+v\nnspawn %+v", bm, ns)
	}
}

// Every cipher suite is one the kubelet accepts (component-base's flag
// parser, which the kubelet runs over tlsCipherSuites), none is one Go
// calls insecure, each has forward secrecy and an AEAD cipher, and both
// key types are served.
func TestKubeletTLSCipherSuites(t *testing.T) {
	ids, err := cliflag.TLSCipherSuites(KubeletTLSCipherSuites)
	if err != nil {
		t.Fatalf("the kubelet refuses the cipher suites: %v", err)
	}
	secure := map[uint16]bool{}
	for _, s := range tls.CipherSuites() {
		secure[s.ID] = true
	}
	for i, name := range KubeletTLSCipherSuites {
		if !secure[ids[i]] {
			t.Errorf("%s is not among Go's secure cipher suites", name)
		}
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "_CHACHA20_POLY1305")) {
			t.Errorf("%s is not ECDHE with AES-GCM or ChaCha20-Poly1305", name)
		}
	}
	for _, kind := range []string{"_ECDSA_", "_RSA_"} {
		if !slices.ContainsFunc(KubeletTLSCipherSuites, func(n string) bool { return strings.Contains(n, kind) }) {
			t.Errorf("no cipher suite for %s certificates", strings.Trim(kind, "_"))
		}
	}
	if _, err := cliflag.TLSVersion(KubeletTLSMinVersion); err != nil || KubeletTLSMinVersion != "VersionTLS12" {
		t.Errorf("tlsMinVersion %q: %v", KubeletTLSMinVersion, err)
	}
}

// The kernel settings are exactly those the kubelet checks
// (setupKernelTunables in k8s.io/kubernetes
// pkg/kubelet/cm/container_manager_linux.go), written as a sysctl.d file
// that sorts after the distributions' own.
func TestKernelTunables(t *testing.T) {
	want := map[string]string{
		"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10", "kernel.panic_on_oops": "1",
		"kernel.keys.root_maxkeys": "1000000", "kernel.keys.root_maxbytes": "25000000",
	}
	got := map[string]string{}
	for _, kt := range KernelTunables {
		got[kt.Key] = kt.Value
	}
	if len(got) != len(want) || len(KernelTunables) != len(want) {
		t.Errorf("KernelTunables = %v, want %v", KernelTunables, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	golden(t, "kubelet-sysctl.conf", RenderKernelTunables())
	// The file parses as sysctl.d reads it: comments, then key = value.
	parsed := map[string]string{}
	for _, l := range strings.Split(string(RenderKernelTunables()), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, " = ")
		if !ok {
			t.Errorf("line %q is not key = value", l)
			continue
		}
		parsed[k] = v
	}
	if len(parsed) != len(want) {
		t.Errorf("the file sets %v, want %v", parsed, want)
	}
	for k, v := range want {
		if parsed[k] != v {
			t.Errorf("the file sets %s = %q, want %q", k, parsed[k], v)
		}
	}
	if !strings.HasPrefix(KernelTunablesConfig, "/etc/sysctl.d/99-") || KernelTunablesConfig <= "/etc/sysctl.d/99-sysctl.conf" {
		t.Errorf("%s does not sort after the distribution's 99-sysctl.conf", KernelTunablesConfig)
	}
	q := kernelTunablesQuery()
	for _, p := range []string{"/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/keys/root_maxbytes", "/proc/sys/kernel/panic_on_oops"} {
		if !strings.Contains(q, p) {
			t.Errorf("the query does not read %s:\n%s", p, q)
		}
	}
}

func TestKernelTunablesDiffering(t *testing.T) {
	all := func(override map[string]string) string {
		var b strings.Builder
		b.WriteString("Welcome to the server\n") // a login script's noise
		for _, kt := range KernelTunables {
			v := kt.Value
			if o, ok := override[kt.Key]; ok {
				if o == "" {
					continue
				}
				v = o
			}
			b.WriteString(kernelApplied + " " + kt.Key + " " + v + "\n")
		}
		return b.String()
	}
	for _, tc := range []struct {
		name string
		out  string
		want []string
	}{
		{"all set", all(nil), nil},
		{"defaults of a fresh server", all(map[string]string{"vm.overcommit_memory": "0", "kernel.panic": "0", "kernel.panic_on_oops": "0"}),
			[]string{"vm.overcommit_memory=0 (want 1)", "kernel.panic=0 (want 10)", "kernel.panic_on_oops=0 (want 1)"}},
		{"absent from the kernel", all(map[string]string{"kernel.keys.root_maxkeys": "absent"}), []string{"kernel.keys.root_maxkeys=absent (want 1000000)"}},
		{"not reported", all(map[string]string{"kernel.keys.root_maxbytes": ""}), []string{"kernel.keys.root_maxbytes=unknown (want 25000000)"}},
		{"no output", "", []string{"vm.overcommit_memory=unknown (want 1)", "vm.panic_on_oom=unknown (want 0)", "kernel.panic=unknown (want 10)",
			"kernel.panic_on_oops=unknown (want 1)", "kernel.keys.root_maxkeys=unknown (want 1000000)", "kernel.keys.root_maxbytes=unknown (want 25000000)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := KernelTunablesDiffering(tc.out); !slices.Equal(got, tc.want) {
				t.Errorf("KernelTunablesDiffering = %q, want %q", got, tc.want)
			}
		})
	}
}

// The kubelet's and kube-proxy's files are 0600 root:root (CIS 4.1.1–4.1.10)
// except the binaries; keys and kubeconfigs are secret content.
func TestNodeFileModes(t *testing.T) {
	kp := placeholder
	files := append(kubeletFiles("/art/kubelet", placeholderCA, kp, []byte("kc"), []byte("cfg"), []byte("unit")),
		kubeProxyFiles("/art/kube-proxy", []byte("kc"), []byte("cfg"))...)
	byPath := map[string]phase.File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	for _, p := range []string{KubeletUnitFile, KubeletConfig, KubeletKubeconfig, KubeletCA, KubeletCert, KubeletKey,
		KubeProxyUnitFile, KubeProxyConfig, KubeProxyKubecfg} {
		f, ok := byPath[p]
		if !ok {
			t.Errorf("%s is not installed", p)
			continue
		}
		if f.Mode != 0o600 || f.Owner != "root:root" {
			t.Errorf("%s: mode %o owner %q, want 600 root:root", p, f.Mode, f.Owner)
		}
	}
	for _, p := range []string{KubeletKey, KubeletKubeconfig, KubeProxyKubecfg} {
		if !byPath[p].Secret {
			t.Errorf("%s is not marked secret", p)
		}
	}
	for _, p := range []string{BinDir + "/kubelet", BinDir + "/kube-proxy"} {
		if f := byPath[p]; f.Mode != 0o755 || f.Local == "" {
			t.Errorf("%s: mode %o local %q, want an uploaded 0755 binary", p, f.Mode, f.Local)
		}
	}
	if len(byPath) != len(files) {
		t.Errorf("a path is installed twice: %d files, %d paths", len(files), len(byPath))
	}
}
