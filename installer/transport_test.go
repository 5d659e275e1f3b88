package installer

import (
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestParseBastion(t *testing.T) {
	for _, tc := range []struct {
		in               string
		user, addr, err  string
		port             int
		keyFile, hostKey string
	}{
		{in: "198.18.0.1", addr: "198.18.0.1", port: 22},
		{in: "ops@198.18.0.1:2222", user: "ops", addr: "198.18.0.1", port: 2222},
		{in: "bastion.example:22", addr: "bastion.example", port: 22},
		{in: "[2001:db8::1]:2200", addr: "2001:db8::1", port: 2200},
		{in: "2001:db8::1", addr: "2001:db8::1", port: 22},
		{in: "198.18.0.1:0", err: "write it as [USER@]HOST[:PORT]"},
		{in: "198.18.0.1:ssh", err: "write it as [USER@]HOST[:PORT]"},
		{in: "ops@", err: "write it as [USER@]HOST[:PORT]"},
		{in: "@198.18.0.1", err: "write it as [USER@]HOST[:PORT]"},
		{in: "a@b@c", err: "write it as [USER@]HOST[:PORT]"},
	} {
		ep, err := parseBastion(tc.in, "/keys/id", "SHA256:pin")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--bastion") {
				t.Errorf("%q: error %v, want one naming --bastion and %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if ep.User != tc.user || ep.Address != tc.addr || ep.Port != tc.port || ep.KeyFile != "/keys/id" || ep.HostKey != "SHA256:pin" || ep.Name != "bastion" {
			t.Errorf("%q: %+v", tc.in, ep)
		}
	}
	if ep, err := parseBastion("", "k", "p"); ep != nil || err != nil {
		t.Errorf("no bastion: %+v, %v", ep, err)
	}
}

// testConfig is a Config over the three-center example inventory (never
// connected to) and a state directory in a temporary directory.
func testConfig(t *testing.T) Config {
	t.Helper()
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Cluster: c, Lines: lines, Store: st}
}

// The plain SSH fields of Config reach every phase manager the engine
// builds: the bastion (key defaulting to spec.ssh.keyFile), the extra
// known_hosts files and accept-new.
func TestConfigSSHFieldsReachTheManagers(t *testing.T) {
	cfg := testConfig(t)
	cfg.Cluster.Spec.SSH.KeyFile = "/keys/deploy"
	cfg.Cluster.Spec.SSH.KnownHosts = []string{"/etc/ssh/ssh_known_hosts"}
	cfg.Bastion = "ops@198.18.0.1:2222"
	cfg.BastionHostKey = "SHA256:pin"
	cfg.KnownHosts = []string{"/tmp/extra_known_hosts"}
	cfg.AcceptNewHostKeys = true
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name string
		b    *ssh.Endpoint
		o    ssh.Options
	}{{"Manager", e.Manager(false).Bastion, e.Manager(true).SSH}, {"ObserveManager", e.ObserveManager().Bastion, e.ObserveManager().SSH}} {
		if m.b == nil || m.b.User != "ops" || m.b.Address != "198.18.0.1" || m.b.Port != 2222 || m.b.KeyFile != "/keys/deploy" || m.b.HostKey != "SHA256:pin" {
			t.Errorf("%s: bastion %+v", m.name, m.b)
		}
		if !slices.Contains(m.o.KnownHosts, "/tmp/extra_known_hosts") || m.o.HostKeyPolicy != ssh.AcceptNew {
			t.Errorf("%s: known hosts %v, policy %q", m.name, m.o.KnownHosts, m.o.HostKeyPolicy)
		}
	}
	// Every host is reached through the bastion, first hop of its chain.
	m := e.Manager(false)
	for _, h := range cfg.Cluster.Hosts() {
		first := phase.EndpointFor(cfg.Cluster, h, m.Bastion)
		for first.Jump != nil {
			first = *first.Jump
		}
		if first.Address != "198.18.0.1" || first.Port != 2222 {
			t.Errorf("%s is not reached through the bastion: first hop %s", h.Name, first.Addr())
		}
	}

	// Without the fields: the inventory's policy, no bastion.
	plain, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if m := plain.Manager(false); m.Bastion != nil || m.SSH.HostKeyPolicy == ssh.AcceptNew || len(m.SSH.KnownHosts) != 0 {
		t.Errorf("no SSH fields: bastion %+v, policy %q, known hosts %v", m.Bastion, m.SSH.HostKeyPolicy, m.SSH.KnownHosts)
	}
}

func TestNewRefusesABadBastion(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"bad address", func(c *Config) { c.Bastion = "ops@:99999" }, `bastion "ops@:99999" (--bastion): write it as [USER@]HOST[:PORT]`},
		{"key without bastion", func(c *Config) { c.BastionKeyFile = "/keys/b" }, "need --bastion"},
		{"pin without bastion", func(c *Config) { c.BastionHostKey = "SHA256:x" }, "need --bastion"},
	} {
		cfg := testConfig(t)
		tc.set(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
