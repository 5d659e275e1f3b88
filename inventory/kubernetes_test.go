package inventory_test

import (
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestValidateMirror covers where binaries come from: a mirror needs the
// operator's pin or copy of its manifest and https, unless a lab says
// allowInsecureMirror (then with a warning).
func TestValidateMirror(t *testing.T) {
	const pin = "9b26d025f1d07134a3cabc002329d343e4b6aaed6d480ae00c04b2ff47642b87"
	mirror := func(url string) func(k *inventory.Kubernetes) {
		return func(k *inventory.Kubernetes) { k.ArtifactDir, k.MirrorURL, k.MirrorManifestSHA256 = "", url, pin }
	}
	for _, tc := range []struct {
		name    string
		mutate  func(k *inventory.Kubernetes)
		path    string // "" means valid
		msg     string
		warning bool
	}{
		{name: "artifact directory", mutate: func(k *inventory.Kubernetes) {}},
		{name: "https mirror with pin", mutate: mirror("https://mirror.example/k8s")},
		{name: "https mirror with manifest copy", mutate: func(k *inventory.Kubernetes) {
			mirror("https://mirror.example/k8s")(k)
			k.MirrorManifestSHA256, k.MirrorManifest = "", "/srv/tricenter/SHA256SUMS"
		}},
		{"mirror without pin", func(k *inventory.Kubernetes) {
			mirror("https://mirror.example/k8s")(k)
			k.MirrorManifestSHA256 = ""
		}, "spec.kubernetes.mirrorManifestSHA256", "is required with mirrorURL", false},
		{"pin not a sha256", func(k *inventory.Kubernetes) {
			mirror("https://mirror.example/k8s")(k)
			k.MirrorManifestSHA256 = strings.ToUpper(pin)
		}, "spec.kubernetes.mirrorManifestSHA256", "64 lowercase hex", false},
		{"plain http", mirror("http://198.18.0.5/k8s"), "spec.kubernetes.mirrorURL", "allowInsecureMirror: true", false},
		{"plain http allowed for a lab", func(k *inventory.Kubernetes) {
			mirror("http://198.18.0.5/k8s")(k)
			k.AllowInsecureMirror = true
		}, "spec.kubernetes.allowInsecureMirror", "plain http", true},
		{"insecure opt-in with https", func(k *inventory.Kubernetes) {
			mirror("https://mirror.example/k8s")(k)
			k.AllowInsecureMirror = true
		}, "spec.kubernetes.allowInsecureMirror", "no effect", true},
		{"ftp mirror", mirror("ftp://mirror.example/k8s"), "spec.kubernetes.mirrorURL", "not an http(s) URL", false},
		{"pin without mirror", func(k *inventory.Kubernetes) { k.MirrorManifestSHA256 = pin }, "spec.kubernetes.mirrorManifestSHA256", "without mirrorURL", false},
		{"opt-in without mirror", func(k *inventory.Kubernetes) { k.AllowInsecureMirror = true }, "spec.kubernetes.allowInsecureMirror", "without mirrorURL", false},
		{"mirror and directory", func(k *inventory.Kubernetes) {
			mirror("https://mirror.example/k8s")(k)
			k.ArtifactDir = "/srv/artifacts"
		}, "spec.kubernetes", "both set", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c.Spec.Kubernetes)
			c.SetDefaults()
			res := c.Validate(nil)
			list := res.Errors
			if tc.warning || tc.path == "" {
				if !res.OK() {
					t.Fatalf("want valid, got %v", res.Err())
				}
				list = res.Warnings
			}
			if tc.path == "" {
				for _, w := range res.Warnings {
					if strings.HasPrefix(w.Path, "spec.kubernetes") {
						t.Errorf("unexpected warning %s: %s", w.Path, w.Message)
					}
				}
				return
			}
			for _, p := range list {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("no problem at %s containing %q; errors %v, warnings %v", tc.path, tc.msg, res.Err(), res.Warnings)
		})
	}
}
