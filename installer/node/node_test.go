package node

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	corev1 "k8s.io/api/core/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
	}
}

func loadCluster(t *testing.T) (*inventory.Cluster, *inventory.IPPlan) {
	t.Helper()
	c, _, err := inventory.Load(filepath.Join("testdata", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if res := c.Validate(nil); !res.OK() {
		t.Fatalf("test inventory invalid: %v", res.Err())
	}
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, ips
}

func host(t *testing.T, c *inventory.Cluster, name string) inventory.Host {
	t.Helper()
	h, ok := c.Host(name)
	if !ok {
		t.Fatalf("no server %s", name)
	}
	return h
}

// placeholder stands for a key pair in golden kubeconfigs.
var placeholder = &pki.KeyPair{
	CertPEM: []byte("-----BEGIN CERTIFICATE-----\nPLACEHOLDER CERTIFICATE\n-----END CERTIFICATE-----\n"),
	KeyPEM:  []byte("-----BEGIN EC PRIVATE KEY-----\nPLACEHOLDER KEY\n-----END EC PRIVATE KEY-----\n"),
}

var placeholderCA = []byte("-----BEGIN CERTIFICATE-----\nPLACEHOLDER CA\n-----END CERTIFICATE-----\n")

func TestGolden(t *testing.T) {
	c, ips := loadCluster(t)
	for _, prof := range []Profile{ProfileBareMetal, ProfileNspawn} {
		// The lab's nspawn machines run on cgroup v1: their inventories
		// say so; a bare-metal inventory keeps the kubelet's default.
		c.Spec.Kubernetes.FailCgroupV1 = nil
		if prof == ProfileNspawn {
			c.Spec.Kubernetes.FailCgroupV1 = ptr(false)
		}
		cd, err := RenderContainerd(ContainerdParams{SandboxImage: DefaultPause, Profile: prof})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "containerd-"+string(prof)+".toml", cd)
		for _, n := range []string{"w1", "cp1"} {
			p, err := KubeletParamsFor(c, host(t, c, n), ips, prof)
			if err != nil {
				t.Fatal(err)
			}
			kc, err := RenderKubeletConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "kubelet-config-"+n+"-"+string(prof)+".yaml", kc)
			golden(t, "kubelet-"+n+"-"+string(prof)+".service", RenderKubeletUnit(p))
		}
		kp, err := RenderKubeProxyConfig(KubeProxyParams{Node: "w1", ClusterCIDR: c.Spec.Network.PodCIDR, Profile: prof})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "kube-proxy-config-w1-"+string(prof)+".yaml", kp)
	}
	cidr, _ := ips.PodCIDR("w1")
	cni, err := RenderCNI(cidr)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cni-w1.conflist", cni)
	golden(t, "kube-proxy.service", RenderKubeProxyUnit())
	golden(t, "containerd.service", RenderContainerdUnit())
	golden(t, "sysctl.conf", []byte(sysctls))
	golden(t, "modules.conf", []byte(modules))
	kk, err := RenderKubeletKubeconfig("golden", "https://198.19.120.10:6443", placeholderCA, placeholder, "w1")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kubelet-w1.kubeconfig", kk)
	pk, err := RenderKubeProxyKubeconfig("golden", "https://198.19.120.10:6443", placeholderCA, placeholder)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kube-proxy.kubeconfig", pk)
}

// The rendered configs decode strictly into the typed objects the
// components read, with the values that matter.
func TestKubeletConfigDecodes(t *testing.T) {
	c, ips := loadCluster(t)
	c.Spec.Kubernetes.FailCgroupV1 = ptr(false)
	p, err := KubeletParamsFor(c, host(t, c, "w1"), ips, ProfileNspawn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RenderKubeletConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &kc); err != nil {
		t.Fatalf("kubelet config does not decode strictly: %v", err)
	}
	cidr, _ := ips.PodCIDR("w1")
	checks := []struct {
		what      string
		got, want any
	}{
		{"anonymous", *kc.Authentication.Anonymous.Enabled, false},
		{"webhook authn", *kc.Authentication.Webhook.Enabled, true},
		{"client CA", kc.Authentication.X509.ClientCAFile, KubeletCA},
		{"authz", kc.Authorization.Mode, kubeletv1beta1.KubeletAuthorizationModeWebhook},
		{"cgroup driver", kc.CgroupDriver, "systemd"},
		{"cluster DNS", kc.ClusterDNS[0], ips.ClusterDNSIP.String()},
		{"pod CIDR", kc.PodCIDR, cidr.String()},
		{"tls cert", kc.TLSCertFile, KubeletCert},
		{"resolvConf", *kc.ResolverConfig, ""},
		{"failSwapOn", *kc.FailSwapOn, false},
		{"failCgroupV1", *kc.FailCgroupV1, false},
		{"oomScoreAdj", *kc.OOMScoreAdj, int32(0)},
		{"imageGC", *kc.ImageGCHighThresholdPercent, int32(100)},
		{"eviction", kc.EvictionHard["memory.available"], "0%"},
		{"kubeletCgroups", kc.KubeletCgroups, "/system.slice/kubelet.service"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	// Bare metal keeps the production defaults, the kubelet's refusal of
	// cgroup v1 among them unless the inventory says otherwise.
	p.Profile = ProfileBareMetal
	p.FailCgroupV1 = nil
	b, err = RenderKubeletConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var bm kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &bm); err != nil {
		t.Fatal(err)
	}
	if bm.FailSwapOn != nil || bm.ResolverConfig != nil || bm.EvictionHard != nil || bm.OOMScoreAdj != nil || bm.FailCgroupV1 != nil {
		t.Errorf("bare-metal kubelet config overrides production defaults:\n%s", b)
	}

	var kp kubeproxyv1alpha1.KubeProxyConfiguration
	pb, err := RenderKubeProxyConfig(KubeProxyParams{Node: "w1", ClusterCIDR: "198.19.128.0/17", Profile: ProfileNspawn})
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(pb, &kp); err != nil {
		t.Fatalf("kube-proxy config does not decode strictly: %v", err)
	}
	if kp.Mode != "iptables" || kp.ClusterCIDR != "198.19.128.0/17" || kp.Conntrack.MaxPerCore == nil || *kp.Conntrack.MaxPerCore != 0 ||
		kp.ClientConnection.Kubeconfig != KubeProxyKubecfg || kp.HostnameOverride != "w1" {
		t.Errorf("kube-proxy config lost a setting:\n%s", pb)
	}
}

func TestKubeletUnitFlags(t *testing.T) {
	c, ips := loadCluster(t)
	for _, tc := range []struct {
		node    string
		tainted bool
		labels  []string
		absent  []string
	}{
		{"w1", false, []string{"topology.kubernetes.io/region=site-a", "topology.kubernetes.io/zone=dc1",
			"tricenter.io/rack=dc1-r01", "example.com/gpu=none"}, []string{"node-role.kubernetes.io/worker"}},
		{"cp1", true, []string{"topology.kubernetes.io/zone=dc1"}, nil},
		{"cp2", false, []string{"topology.kubernetes.io/zone=dc2"}, nil}, // control plane and worker: schedulable
		{"cp3", true, []string{"topology.kubernetes.io/region=site-b", "topology.kubernetes.io/zone=dc3"}, nil},
	} {
		t.Run(tc.node, func(t *testing.T) {
			p, err := KubeletParamsFor(c, host(t, c, tc.node), ips, ProfileBareMetal)
			if err != nil {
				t.Fatal(err)
			}
			unit := string(RenderKubeletUnit(p))
			b, err := RenderKubeletConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			var kc kubeletv1beta1.KubeletConfiguration
			if err := yaml.UnmarshalStrict(b, &kc); err != nil {
				t.Fatal(err)
			}
			tainted := slices.ContainsFunc(kc.RegisterWithTaints, func(x corev1.Taint) bool { return x.MatchTaint(&TaintControlPlane) })
			if tainted != tc.tainted || len(kc.RegisterWithTaints) > 1 {
				t.Errorf("registerWithTaints %v, want the control-plane taint: %v", kc.RegisterWithTaints, tc.tainted)
			}
			if strings.Contains(unit, "--register-with-taints") {
				t.Errorf("the unit sets the deprecated --register-with-taints flag:\n%s", unit)
			}
			for _, l := range tc.labels {
				if !strings.Contains(unit, l) {
					t.Errorf("unit lacks label %s", l)
				}
			}
			for _, l := range tc.absent {
				if strings.Contains(unit, l) {
					t.Errorf("unit sets %s, which NodeRestriction refuses to a kubelet", l)
				}
			}
			if !strings.Contains(unit, "--hostname-override="+tc.node+" ") || !strings.Contains(unit, "--node-ip="+host(t, c, tc.node).SSH.Address+" ") {
				t.Errorf("unit lacks node name or IP:\n%s", unit)
			}
		})
	}
}

func TestKubeletMaySet(t *testing.T) {
	for key, want := range map[string]bool{
		"tricenter.io/rack":                        true,
		"topology.kubernetes.io/zone":              true,
		"topology.kubernetes.io/region":            true,
		"kubernetes.io/hostname":                   true,
		"node.kubernetes.io/instance-type":         true,
		"node.kubernetes.io/anything":              true,
		"kubelet.kubernetes.io/x":                  true,
		"plain":                                    true,
		"example.com/x":                            true,
		"node-role.kubernetes.io/control-plane":    false,
		"node-role.kubernetes.io/worker":           false,
		"node-restriction.kubernetes.io/dedicated": false,
		"kubernetes.io/role":                       false,
		"foo.k8s.io/x":                             false,
		"topology.kubernetes.io/something-else":    false,
	} {
		if got := KubeletMaySet(key); got != want {
			t.Errorf("KubeletMaySet(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestCNIIsRoutedWithoutNAT(t *testing.T) {
	_, ips := loadCluster(t)
	cidr, _ := ips.PodCIDR("w1")
	b, err := RenderCNI(cidr)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := yaml.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	br := conf.Plugins[0]
	if br["type"] != "bridge" || br["ipMasq"] != false || br["isGateway"] != true {
		t.Fatalf("bridge plugin: %v", br)
	}
	ranges := br["ipam"].(map[string]any)["ranges"].([]any)[0].([]any)[0].(map[string]any)
	if ranges["subnet"] != cidr.String() {
		t.Fatalf("host-local subnet %v, want %v", ranges["subnet"], cidr)
	}
	if conf.Plugins[1]["type"] != "portmap" {
		t.Fatalf("second plugin %v, want portmap", conf.Plugins[1])
	}
}

func TestPhasesAndIDs(t *testing.T) {
	c, ips := loadCluster(t)
	dir := t.TempDir()
	bins := map[string]string{}
	for _, k := range append([]string{BinKubelet, BinKubeProxy, ImagePause, ImageCoreDNS}, RuntimeBinaries()...) {
		bins[k] = filepath.Join(dir, k)
	}
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	o := Options{Cluster: c, IPs: ips, PKI: store, CA: placeholderCA, Server: "https://198.19.120.10:6443",
		Binaries: bins, Select: inventory.Selector{Servers: []string{"w1"}}}
	ps, err := Phases(o)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		ids = append(ids, phase.IDOf(p))
	}
	if want := []string{IDPreflight, IDContainerd, IDImages, IDCNI, IDKubelet, IDKubeProxy}; !slices.Equal(ids, want) {
		t.Fatalf("phase IDs %v, want %v", ids, want)
	}
	// Only the selected server got certificates.
	if _, err := os.Stat(filepath.Join(dir, "pki", pki.KubernetesCA, pki.KubeletClientFile("w1")+".crt")); err != nil {
		t.Fatalf("no kubelet client certificate for w1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", pki.KubernetesCA, pki.KubeletClientFile("cp1")+".crt")); err == nil {
		t.Fatal("certificate issued for an unselected server")
	}

	for _, tc := range []struct {
		name string
		mod  func(o *Options)
		want string
	}{
		{"no CA", func(o *Options) { o.CA = nil }, "CA"},
		{"no kubelet", func(o *Options) { o.Binaries = without(bins, BinKubelet) }, `"kubelet"`},
		{"no containerd", func(o *Options) { o.Binaries = without(bins, BinContainerd) }, `"containerd"`},
		{"no CNI plugin", func(o *Options) { o.Binaries = without(bins, "host-local") }, `"host-local"`},
		{"relative path", func(o *Options) {
			o.Binaries = maps.Clone(bins)
			o.Binaries[BinRunc] = "runc"
		}, "not absolute"},
		{"profile", func(o *Options) { o.Profile = "vm" }, `"vm"`},
		{"unknown server", func(o *Options) { o.Select = inventory.Selector{Servers: []string{"nope"}} }, `"nope"`},
		{"no pod CIDR", func(o *Options) {
			x := *ips
			x.PodCIDRs = nil
			o.IPs = &x
		}, "no pod CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oo := o
			tc.mod(&oo)
			_, err := Phases(oo)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %s", err, tc.want)
			}
		})
	}
}

func without(m map[string]string, key string) map[string]string {
	m = maps.Clone(m)
	delete(m, key)
	return m
}

func TestParseImageList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"registry.k8s.io/pause:3.10\n", []string{"registry.k8s.io/pause:3.10"}, false},
		{"registry.k8s.io/pause:3.10\n\nregistry.k8s.io/coredns/coredns:v1.12.0\r\n", []string{"registry.k8s.io/coredns/coredns:v1.12.0", "registry.k8s.io/pause:3.10"}, false},
		{"REF TYPE DIGEST\nregistry.k8s.io/pause:3.10 application/vnd.oci sha256:x\n", nil, true},
	} {
		got, err := ParseImageList(tc.in)
		if (err != nil) != tc.err {
			t.Fatalf("ParseImageList(%q) error %v, want error %v", tc.in, err, tc.err)
		}
		var refs []string
		for r := range got {
			refs = append(refs, r)
		}
		slices.Sort(refs)
		if !tc.err && !slices.Equal(refs, tc.want) {
			t.Fatalf("ParseImageList(%q) = %v, want %v", tc.in, refs, tc.want)
		}
	}
}

func FuzzParseImageList(f *testing.F) {
	f.Add("registry.k8s.io/pause:3.10\nregistry.k8s.io/coredns/coredns:v1.12.0\n")
	f.Add("a b\n")
	f.Add("\n\n\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		refs, err := ParseImageList(s)
		if err != nil {
			return
		}
		for r := range refs {
			if r == "" || strings.ContainsFunc(r, unicode.IsSpace) {
				t.Fatalf("parsed reference %q from %q", r, s)
			}
			if !strings.Contains(s, r) {
				t.Fatalf("reference %q not in the input", r)
			}
		}
	})
}

func TestMarshalSparseKeepsChosenZeros(t *testing.T) {
	type inner struct {
		A string `json:"a"`
		B *bool  `json:"b,omitempty"`
	}
	type obj struct {
		Kind string  `json:"kind,omitempty"`
		N    int     `json:"n"`
		P    *string `json:"p,omitempty"`
		In   inner   `json:"in"`
	}
	f := false
	e := ""
	b, err := marshalSparse(obj{Kind: "K", P: &e, In: inner{B: &f}}, obj{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "in:\n  b: false\nkind: K\np: \"\"\n"; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
