package inventory_test

import (
	"os"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

const minimal = `apiVersion: tricenter.io/v1alpha1
kind: Cluster
metadata:
  name: t
spec:
  sites:
    - name: a
  centers:
    - {name: c1, site: a, role: production}
  racks:
    - name: r1
      center: c1
      subnet: 198.18.64.0
      tor: {name: t1, asn: 65100, address: 198.18.64.1}
      servers:
        - name: s1
          roles: [etcd]
          ssh:
            address: 198.18.64.10
            agent: true
  network:
    podCIDR: 198.19.128.0/17
    serviceCIDR: 198.19.96.0/20
    loadBalancerPool: [198.19.120.0/24]
  etcd:
    members: auto
`

func TestParseAppliesDefaults(t *testing.T) {
	c, _, err := inventory.Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Spec.Racks[0]
	if r.Subnet != "198.18.64.0/24" {
		t.Errorf("subnet default bits: got %q", r.Subnet)
	}
	if r.MaxServers != 48 || r.TOR.Gateway != "198.18.64.1" {
		t.Errorf("rack defaults: %+v", r)
	}
	s := r.Servers[0]
	if s.SSH.Port != 22 || s.SSH.User != "root" {
		t.Errorf("ssh defaults: %+v", s.SSH)
	}
	n := c.Spec.Network
	if n.PodMaskSize != 24 || n.ClusterDomain != "cluster.local" || n.APIVIP != "198.19.120.1" {
		t.Errorf("network defaults: %+v", n)
	}
	if n.BGP.Mode != inventory.BGPModeTOR || n.BGP.KeepaliveSeconds != 3 || n.BGP.HoldSeconds != 9 || n.BGP.ASNBase != 4200000000 {
		t.Errorf("bgp defaults: %+v", n.BGP)
	}
	if c.Spec.Etcd.Members != inventory.MembersAuto {
		t.Errorf("members: %v", c.Spec.Etcd.Members)
	}
	// SetDefaults is idempotent.
	before := *c.Spec.Racks[0].Servers[0].SSH.Agent
	c.SetDefaults()
	if *c.Spec.Racks[0].Servers[0].SSH.Agent != before || c.Spec.Racks[0].Subnet != "198.18.64.0/24" {
		t.Error("SetDefaults is not idempotent")
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"unknown field with line", strings.Replace(minimal, "      center: c1\n", "      center: c1\n      centre: c1\n", 1), "line 13: unknown field centre in rack"},
		{"wrong type", strings.Replace(minimal, "tor: {name: t1, asn: 65100", "tor: {name: t1, asn: lots", 1), "line 14: expected a number, found \"lots\""},
		{"members not a number", strings.Replace(minimal, "members: auto", "members: five", 1), `etcd.members is "five"`},
		{"api version", strings.Replace(minimal, "v1alpha1", "v1", 1), `this tricenter reads "tricenter.io/v1alpha1"`},
		{"kind", strings.Replace(minimal, "kind: Cluster", "kind: Pod", 1), `kind is "Pod"`},
		{"empty", "", "empty"},
		{"two documents", minimal + "---\n" + minimal, "more than one YAML document"},
		{"bad yaml", "apiVersion: [", "invalid YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := inventory.Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestProblemsCarryLines(t *testing.T) {
	doc := strings.Replace(minimal, "address: 198.18.64.10", "address: 127.0.0.1", 1)
	c, lines, err := inventory.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	res := c.Validate(lines)
	for _, p := range res.Errors {
		if p.Path == "spec.racks[0].servers[0].ssh.address" {
			if p.Line != 19 {
				t.Fatalf("line = %d, want 19", p.Line)
			}
			if !strings.Contains(p.String(), "(line 19)") {
				t.Fatalf("String() = %q", p)
			}
			return
		}
	}
	t.Fatalf("no error for the loopback address: %v", res.Err())
}

func TestLoadExamples(t *testing.T) {
	for _, f := range []string{"../examples/inventory/three-center.yaml", "../examples/inventory/lab.yaml"} {
		c, lines, err := inventory.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if res := c.Validate(lines); !res.OK() || len(res.Warnings) > 0 {
			t.Fatalf("%s: %v %v", f, res.Err(), res.Warnings)
		}
	}
	if _, _, err := inventory.Load("does-not-exist.yaml"); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestSecretRefResolve(t *testing.T) {
	t.Setenv("TRICENTER_TEST_SECRET", "s3cret")
	v, err := inventory.SecretRef{Env: "TRICENTER_TEST_SECRET"}.Resolve()
	if err != nil || v != "s3cret" {
		t.Fatalf("env: %q %v", v, err)
	}
	f := t.TempDir() + "/pw"
	if err := os.WriteFile(f, []byte("filepw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err = inventory.SecretRef{File: f}.Resolve()
	if err != nil || v != "filepw" {
		t.Fatalf("file: %q %v", v, err)
	}
	_, err = inventory.SecretRef{Env: "TRICENTER_TEST_UNSET_VAR"}.Resolve()
	if err == nil || !strings.Contains(err.Error(), "TRICENTER_TEST_UNSET_VAR is not set") {
		t.Fatalf("unset: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("secret value leaked into an error")
	}
}

func TestSelect(t *testing.T) {
	c := base()
	hs, err := c.Select(inventory.Selector{Centers: []string{"dc3"}, Roles: []inventory.Role{inventory.RoleEtcd}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Center.Name != "dc3" || hs[0].Site.Name != "site-b" || hs[0].JumpHost() == nil {
		t.Fatalf("got %+v", hs)
	}
	for _, bad := range []inventory.Selector{{Centers: []string{"dc9"}}, {Racks: []string{"nope"}}, {Servers: []string{"ghost"}}, {Roles: []inventory.Role{"boss"}}} {
		if _, err := c.Select(bad); err == nil {
			t.Errorf("selector %+v matched silently", bad)
		}
	}
}

func TestSSHKnownHostsBastionAndSharedJump(t *testing.T) {
	doc := strings.Replace(minimal, "spec:\n", "spec:\n  ssh:\n    knownHosts: /etc/ssh/ssh_known_hosts\n    agent: true\n    bastion: {address: 198.18.2.1, user: ops}\n", 1)
	c, _, err := inventory.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Spec.SSH.KnownHosts) != 1 || c.Spec.SSH.KnownHosts[0] != "/etc/ssh/ssh_known_hosts" {
		t.Fatalf("scalar knownHosts: %v", c.Spec.SSH.KnownHosts)
	}
	b := c.Spec.SSH.Bastion
	if b == nil || b.Port != 22 || b.Name != "bastion" || b.Agent == nil || !*b.Agent {
		t.Fatalf("bastion defaults: %+v", b)
	}
	doc = strings.Replace(minimal, "spec:\n", "spec:\n  ssh:\n    knownHosts: [a, b]\n", 1)
	if c, _, err = inventory.Parse([]byte(doc)); err != nil || len(c.Spec.SSH.KnownHosts) != 2 {
		t.Fatalf("list knownHosts: %v %v", c.Spec.SSH.KnownHosts, err)
	}

	// One site bastion may serve both centers of a site.
	c = base()
	c.Spec.Centers[1].JumpHost.Address = c.Spec.Centers[0].JumpHost.Address
	if res := c.Validate(nil); !res.OK() {
		t.Fatalf("shared jump host refused: %v", res.Err())
	}
	c.Spec.Centers[1].JumpHost.Port = 2222
	res := c.Validate(nil)
	if res.OK() || res.Errors[0].Path != "spec.centers[1].jumpHost.address" {
		t.Fatalf("shared jump host with another port: %v", res.Err())
	}
}
