package inventory_test

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestPodSecurityDefaults: an inventory without spec.kubernetes.podSecurity
// enforces baseline, warns and audits restricted, exempts kube-system; a
// level that is set is kept.
func TestPodSecurityDefaults(t *testing.T) {
	c := base()
	p := c.Spec.Kubernetes.PodSecurity
	if p.Enforce != "baseline" || p.Warn != "restricted" || p.Audit != "restricted" || !slices.Equal(p.ExemptNamespaces, []string{"kube-system"}) {
		t.Fatalf("defaults: %+v", p)
	}
	c = base()
	c.Spec.Kubernetes.PodSecurity = inventory.PodSecurity{Enforce: "restricted", ExemptNamespaces: []string{"monitoring"}}
	c.SetDefaults()
	p = c.Spec.Kubernetes.PodSecurity
	if p.Enforce != "restricted" || p.Warn != "restricted" || !slices.Equal(p.ExemptNamespaces, []string{"monitoring"}) {
		t.Fatalf("set levels not kept: %+v", p)
	}
	if !c.Validate(nil).OK() {
		t.Fatal(c.Validate(nil).Err())
	}
}

// TestPodSecurityYAML: the block reads from the inventory file under
// spec.kubernetes.podSecurity, and a bad level is reported at its line.
func TestPodSecurityYAML(t *testing.T) {
	c := invgen.Generate(invgen.Default())
	c.Spec.Kubernetes.PodSecurity = inventory.PodSecurity{Enforce: "restricted", Warn: "restricted", Audit: "baseline",
		ExemptNamespaces: []string{"kube-system", "ingress"}}
	doc, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "podSecurity:\n") || !strings.Contains(string(doc), "exemptNamespaces:") {
		t.Fatalf("YAML keys:\n%s", doc)
	}
	parsed, _, err := inventory.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := parsed.Spec.Kubernetes.PodSecurity
	if p.Enforce != "restricted" || p.Audit != "baseline" || !slices.Equal(p.ExemptNamespaces, []string{"kube-system", "ingress"}) {
		t.Fatalf("parsed %+v", p)
	}
	bad := strings.Replace(string(doc), "enforce: restricted", "enforce: strict", 1)
	parsed, lines, err := inventory.Parse([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	res := parsed.Validate(lines)
	for _, e := range res.Errors {
		if e.Path == "spec.kubernetes.podSecurity.enforce" {
			if want := 1 + strings.Count(bad[:strings.Index(bad, "enforce: strict")], "\n"); e.Line != want {
				t.Errorf("reported at line %d, want %d", e.Line, want)
			}
			return
		}
	}
	t.Fatalf("no error at spec.kubernetes.podSecurity.enforce: %v", res.Err())
}

func TestValidatePodSecurity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(p *inventory.PodSecurity)
		path    string
		msg     string
		warning bool
	}{
		{"enforce typo", func(p *inventory.PodSecurity) { p.Enforce = "Baseline" }, "spec.kubernetes.podSecurity.enforce", `"Baseline" is not a Pod Security level: use privileged, baseline or restricted`, false},
		{"warn", func(p *inventory.PodSecurity) { p.Warn = "strict" }, "spec.kubernetes.podSecurity.warn", "privileged, baseline or restricted", false},
		{"audit", func(p *inventory.PodSecurity) { p.Audit = "none" }, "spec.kubernetes.podSecurity.audit", "privileged, baseline or restricted", false},
		{"namespace name", func(p *inventory.PodSecurity) { p.ExemptNamespaces = []string{"kube-system", "Kube_Public"} },
			"spec.kubernetes.podSecurity.exemptNamespaces[1]", "not a namespace name", false},
		{"namespace twice", func(p *inventory.PodSecurity) { p.ExemptNamespaces = []string{"kube-system", "kube-system"} },
			"spec.kubernetes.podSecurity.exemptNamespaces[1]", "listed twice", false},
		{"privileged enforce warns", func(p *inventory.PodSecurity) { p.Enforce = "privileged" },
			"spec.kubernetes.podSecurity.enforce", "admits privileged pods", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c.Spec.Kubernetes.PodSecurity)
			res := c.Validate(nil)
			list := res.Errors
			if tc.warning {
				if !res.OK() {
					t.Fatalf("want valid, got %v", res.Err())
				}
				list = res.Warnings
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
