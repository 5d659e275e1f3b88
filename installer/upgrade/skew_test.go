package upgrade

import (
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var v = inventory.MustVersion

// obsOf builds an observation: versions by server for kube-apiserver,
// kubelet and etcd.
func obsOf(api, kubelet, etcd map[string]string) *Observation {
	o := NewObservation()
	for h, s := range api {
		o.APIServer[h] = v(s)
	}
	for h, s := range kubelet {
		o.Kubelet[h] = v(s)
	}
	for h, s := range etcd {
		o.Etcd[h] = v(s)
	}
	return o
}

func TestValidateSkew(t *testing.T) {
	all := func(s string) map[string]string { return map[string]string{"a": s, "b": s, "c": s} }
	for _, tc := range []struct {
		name                   string
		api, kubelet, etcd     map[string]string
		kube, etcdTo           string
		allowPatchDowngrade    bool
		unobserved             string
		wantErr, wantNot, warn string
	}{
		{name: "minor upgrade", api: all("v1.36.3"), kubelet: all("v1.36.3"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "patch upgrade", api: all("v1.37.1"), kubelet: all("v1.37.1"), etcd: all("v3.6.10"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "nothing to do", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "skip one minor", api: all("v1.35.4"), kubelet: all("v1.35.4"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16",
			wantErr: "kube-apiserver on a, b, c: v1.35.4 → v1.37.2 skips a minor: upgrade to v1.36.x first"},
		{name: "skip to an unsupported minor", api: all("v1.36.3"), kubelet: all("v1.36.3"), etcd: all("v3.6.16"), kube: "v1.38.0", etcdTo: "v3.6.16",
			wantErr: "v1.36.3 → v1.38.0 skips a minor: upgrade to v1.37.x first"},
		{name: "unsupported target named", api: all("v1.36.3"), kubelet: all("v1.36.3"), etcd: all("v3.6.16"), kube: "v1.38.0", etcdTo: "v3.6.16",
			wantErr: "Kubernetes v1.38.0 is not supported: tricenter installs 1.36 and 1.37"},
		{name: "skip two minors", api: all("v1.35.0"), kubelet: all("v1.35.0"), etcd: all("v3.6.16"), kube: "v1.38.0", etcdTo: "v3.6.16",
			wantErr: "v1.35.0 → v1.38.0 skips 2 minors: upgrade to v1.36.x, then v1.37.x first"},
		{name: "minor downgrade", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.36.3", etcdTo: "v3.6.16",
			wantErr: "v1.37.2 → v1.36.3 is a minor downgrade, which Kubernetes does not support"},
		{name: "patch downgrade refused", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.37.1", etcdTo: "v3.6.16",
			wantErr: "v1.37.2 → v1.37.1 is a patch downgrade: allow it with --allow-patch-downgrade"},
		{name: "patch downgrade allowed", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.37.1", etcdTo: "v3.6.16",
			allowPatchDowngrade: true},
		{name: "mixed API servers, resumed", api: map[string]string{"a": "v1.37.2", "b": "v1.36.3", "c": "v1.36.3"}, kubelet: all("v1.36.3"),
			etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "mixed kubelets, resumed", api: all("v1.37.2"), kubelet: map[string]string{"a": "v1.37.2", "b": "v1.36.3", "c": "v1.36.3"},
			etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "kubelet ahead of an API server", api: map[string]string{"a": "v1.37.2", "b": "v1.36.3", "c": "v1.36.3"},
			kubelet: map[string]string{"a": "v1.37.2", "b": "v1.36.3", "c": "v1.36.3"}, etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16",
			warn: "kubelet on a: v1.37.2 is newer than kube-apiserver v1.36.3 on b"},
		{name: "kubelet two minors behind", api: all("v1.36.3"), kubelet: map[string]string{"a": "v1.36.3", "b": "v1.35.9", "c": "v1.36.3"},
			etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16",
			wantErr: "kubelet on b: v1.35.9 → v1.37.2 skips a minor: upgrade to v1.36.x first", wantNot: "kubelet on a"},
		{name: "etcd 3.5.35 to 3.6", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.5.35"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "etcd old 3.5 to 3.6 (bridged by the plan)", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.5.13"), kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "etcd skips a minor", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.4.27"), kube: "v1.37.2", etcdTo: "v3.6.16",
			wantErr: "etcd v3.4.27 → v3.6.16 skips a minor: upgrade to v3.5.35 first"},
		{name: "etcd minor downgrade", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.5.35",
			wantErr: "etcd v3.6.16 → v3.5.35 is a minor downgrade: tricenter does not downgrade etcd"},
		{name: "etcd patch downgrade refused", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.10",
			wantErr: "etcd v3.6.16 → v3.6.10 is a patch downgrade"},
		{name: "etcd half upgraded, resumed", api: all("v1.37.2"), kubelet: all("v1.37.2"),
			etcd: map[string]string{"a": "v3.6.16", "b": "v3.5.35", "c": "v3.5.35"}, kube: "v1.37.2", etcdTo: "v3.6.16"},
		{name: "etcd 3.6 beside a 3.5 too old for it", api: all("v1.37.2"), kubelet: all("v1.37.2"),
			etcd: map[string]string{"a": "v3.6.16", "b": "v3.5.13", "c": "v3.5.35"}, kube: "v1.37.2", etcdTo: "v3.6.16",
			wantErr: "etcd on b: etcd v3.5.13 while a already runs v3.6.16: etcd 3.6 members need every 3.5 member at v3.5.26 or later"},
		{name: "etcd target unsupported", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.7.0",
			wantErr: "etcd v3.7.0 is not supported: tricenter installs 3.5 and 3.6"},
		{name: "a component not observed", api: all("v1.36.3"), kubelet: all("v1.36.3"), etcd: all("v3.6.16"), kube: "v1.37.2", etcdTo: "v3.6.16",
			unobserved: "kubelet on d", wantErr: "not observed: kubelet on d: Node not registered: bring it back"},
		{name: "major version change", api: all("v1.37.2"), kubelet: all("v1.37.2"), etcd: all("v3.6.16"), kube: "v2.0.0", etcdTo: "v3.6.16",
			wantErr: "v1.37.2 → v2.0.0 changes the major version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := obsOf(tc.api, tc.kubelet, tc.etcd)
			if tc.unobserved != "" {
				obs.Unobserved[tc.unobserved] = "Node not registered"
			}
			warns, err := Validate(obs, Options{Kubernetes: v(tc.kube), Etcd: v(tc.etcdTo), AllowPatchDowngrade: tc.allowPatchDowngrade})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error:\n%v\nwant one containing %q", err, tc.wantErr)
			case tc.wantNot != "" && err != nil && strings.Contains(err.Error(), tc.wantNot):
				t.Fatalf("error names %q: %v", tc.wantNot, err)
			}
			joined := strings.Join(warns, "\n")
			if tc.warn != "" && !strings.Contains(joined, tc.warn) {
				t.Errorf("warnings %q, want one containing %q", warns, tc.warn)
			}
			if tc.warn == "" && len(warns) > 0 {
				t.Errorf("unexpected warnings %q", warns)
			}
		})
	}
}

func TestVersionInAndProbe(t *testing.T) {
	for in, want := range map[string]string{
		"Kubernetes v1.37.2":          "v1.37.2",
		"etcd Version: 3.6.16":        "v3.6.16",
		"v1.36.3-rc.1+tricenter":      "v1.36.3",
		"3.5.35":                      "v3.5.35",
		"Kubernetes v1.37.2-dirty 10": "v1.37.2",
	} {
		got, ok := VersionIn(in)
		if !ok || got.String() != want {
			t.Errorf("VersionIn(%q) = %v, %v, want %s", in, got, ok, want)
		}
	}
	if _, ok := VersionIn("v0.0.0-master"); !ok {
		t.Error("a zero version is still a version")
	}
	if _, ok := VersionIn("no version here"); ok {
		t.Error("VersionIn found a version in prose")
	}

	out := "kubelet\tKubernetes v1.37.2\t812\t/usr/local/bin/kubelet\n" +
		"kube-proxy\tKubernetes v1.37.2\t900\t/usr/local/bin/kube-proxy (deleted)\n" +
		"etcd\t\t0\t\n" +
		"kube-scheduler\tKubernetes v1.36.3\t0\t\n"
	p, err := ParseProbe(out)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := p[BinKubelet].Runs(); !ok || r != v("v1.37.2") {
		t.Errorf("kubelet runs %v, %v", r, ok)
	}
	if b := p[BinKubeProxy]; !b.Stale || !b.Running {
		t.Errorf("kube-proxy running a replaced binary: %+v", b)
	}
	if _, ok := p[BinKubeProxy].Runs(); ok {
		t.Error("a stale process runs no known version")
	}
	if _, ok := p[BinEtcd].Runs(); ok || p[BinEtcd].Running {
		t.Errorf("absent etcd: %+v", p[BinEtcd])
	}
	if b := p[BinScheduler]; b.Running || b.Installed != v("v1.36.3") {
		t.Errorf("installed but stopped scheduler: %+v", b)
	}
	for _, bad := range []string{"kubelet v1.37.2 812", "kubelet\tx\tpid\t/x", "\tKubernetes v1.37.2\t1\t/x"} {
		if _, err := ParseProbe(bad); err == nil {
			t.Errorf("ParseProbe(%q) accepted it", bad)
		}
	}
	cmd := ProbeCommand([]ProbeTarget{{BinKubelet, "/usr/local/bin/kubelet", "kubelet.service"}, {"odd name", "/x y", "u"}})
	for _, want := range []string{"probe kubelet /usr/local/bin/kubelet kubelet.service", "probe 'odd name' '/x y' u", "readlink \"/proc/$pid/exe\""} {
		if !strings.Contains(cmd, want) {
			t.Errorf("ProbeCommand lacks %q:\n%s", want, cmd)
		}
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add("kubelet\tKubernetes v1.37.2\t812\t/usr/local/bin/kubelet\n")
	f.Add("etcd\t\t0\t\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProbe(s)
		if err != nil {
			return
		}
		for name, b := range p {
			if name == "" {
				t.Fatal("a binary without a name")
			}
			if b.Stale && !b.Running {
				t.Fatalf("%s: stale but not running", name)
			}
		}
	})
}
