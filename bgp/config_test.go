package bgp

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAgentConfigRoundTrip(t *testing.T) {
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	for _, n := range p.Nodes {
		cfg, err := p.AgentConfig(n.Name, ConfigOptions{CheckInterval: 250 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		data, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseConfig(data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", n.Name, err, data)
		}
		if !reflect.DeepEqual(cfg, back) {
			t.Errorf("%s: round trip changed the configuration:\n%+v\n%+v", n.Name, cfg, back)
		}
	}
	if _, err := p.AgentConfig("nope", ConfigOptions{}); err == nil || !strings.Contains(err.Error(), `no node named "nope"`) {
		t.Errorf("unknown node: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	base := `apiVersion: tricenter.io/v1alpha1
kind: BGPAgentConfig
node: n1
asn: 4200000001
routerID: 198.18.33.10
peers:
  - {name: core, address: 198.18.32.1, asn: 65000}
`
	if _, err := ParseConfig([]byte(base)); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct{ name, extra, want string }{
		{"unknown field", "colour: blue\n", "field colour not found"},
		{"bad prefix", "prefixes: [198.18.40.1/26]\n", "prefixes[0]: 198.18.40.1/26 has host bits set: use 198.18.40.0/26"},
		{"not a prefix", "prefixes: [banana]\n", `prefixes[0]: "banana" is not an IPv4 CIDR`},
		{"bad community", "communities: [\"1:2\"]\n", "communities[0]: large community"},
		{"hold", "timers: {keepaliveSeconds: 3, holdSeconds: 2}\n", "timers.holdSeconds: is 2"},
		{"keepalive", "timers: {keepaliveSeconds: 9, holdSeconds: 9}\n", "timers.keepaliveSeconds: is 9"},
		{"restart", "gracefulRestart: {enabled: true}\n", "gracefulRestart.restartSeconds: is 0"},
		{"service without vips", "services: [{name: a}]\n", "services[0].vips: is empty"},
		{"bad vip", "services: [{name: a, vips: [x]}]\n", `services[0].vips[0]: "x" is not an IPv4 address`},
		{"bad url", "services: [{name: a, vips: [198.18.46.1], check: {url: 'ftp://x'}}]\n", `services[0].check.url: "ftp://x" is not an http(s) URL`},
		{"bad duration", "services: [{name: a, vips: [198.18.46.1], check: {url: 'http://x', interval: soon}}]\n", `"soon" is not a duration`},
		{"timeout above interval", "services: [{name: a, vips: [198.18.46.1], check: {url: 'http://x', interval: 1s, timeout: 2s}}]\n", "services[0].check.timeout: is 2s"},
		{"duplicate service", "services: [{name: a, vips: [198.18.46.1]}, {name: a, vips: [198.18.46.2]}]\n", `services[1].name: "a" is used twice`},
		{"service name", "services: [{name: ../etc, vips: [198.18.46.1]}]\n", `services[0].name: service name "../etc": use letters, digits`},
		{"relative hold dir", "holdDir: holds\n", `holdDir: "holds" is not an absolute path`},
		{"lb relative kubeconfig", "loadBalancers: {kubeconfig: kc, center: dc1, centerRole: production}\n", `loadBalancers.kubeconfig: "kc" is not an absolute path`},
		{"lb no center", "loadBalancers: {centerRole: production}\n", "loadBalancers.center: is empty"},
		{"lb role", "loadBalancers: {center: dc1, centerRole: dr}\n", `loadBalancers.centerRole: is "dr": use production, local-dr or remote-dr`},
		{"lb no role", "loadBalancers: {center: dc1}\n", `loadBalancers.centerRole: is "": use production`},
		{"lb prefer", "loadBalancers: {center: dc1, centerRole: production, prefer: nearest}\n", `loadBalancers.prefer: is "nearest": use production, local or none`},
		{"lb unknown field", "loadBalancers: {center: dc1, centerRole: production, zone: a}\n", "field zone not found"},
		{"relative password file", "peers: [{name: c, address: 198.18.32.1, asn: 1, passwordFile: pw}]\n", `peers[0].passwordFile: "pw" is not an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := base + tc.extra
			if strings.HasPrefix(tc.extra, "peers:") {
				doc = strings.Replace(base, "peers:\n  - {name: core, address: 198.18.32.1, asn: 65000}\n", "", 1) + tc.extra
			}
			_, err := ParseConfig([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
	// Every problem at once.
	_, err := ParseConfig([]byte("kind: BGPAgentConfig\nrouterID: x\n"))
	for _, want := range []string{"asn: is not set", `routerID: "x"`, "peers: is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
}

// TestAgentConfigLoadBalancers: the loadBalancers section takes the
// node's center, its role and its worker role from the plan, and defaults.
func TestAgentConfigLoadBalancers(t *testing.T) {
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	for _, tc := range []struct {
		node string
		o    LoadBalancerOptions
		want LoadBalancerConfig
	}{
		{"n1", LoadBalancerOptions{}, LoadBalancerConfig{Kubeconfig: DefaultLoadBalancerKubeconfig, Center: "dc1", CenterRole: "production", Prefer: "production"}},
		{"n3", LoadBalancerOptions{Kubeconfig: "/run/kc", Prefer: "local"}, LoadBalancerConfig{Kubeconfig: "/run/kc", Center: "dc2", CenterRole: "local-dr", Worker: true, Prefer: "local"}},
		{"n4", LoadBalancerOptions{Prefer: "none"}, LoadBalancerConfig{Kubeconfig: DefaultLoadBalancerKubeconfig, Center: "dc3", CenterRole: "remote-dr", Prefer: "none"}},
	} {
		cfg, err := p.AgentConfig(tc.node, ConfigOptions{LoadBalancers: &tc.o})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.LoadBalancers == nil || *cfg.LoadBalancers != tc.want {
			t.Errorf("%s: loadBalancers %+v, want %+v", tc.node, cfg.LoadBalancers, tc.want)
		}
		data, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "loadBalancers:\n  kubeconfig: "+tc.want.Kubeconfig+"\n  center: "+tc.want.Center+"\n  centerRole: "+string(tc.want.CenterRole)) {
			t.Errorf("%s: rendered without the section as expected:\n%s", tc.node, data)
		}
		back, err := ParseConfig(data)
		if err != nil || !reflect.DeepEqual(back, cfg) {
			t.Errorf("%s: round trip: %v\n%+v\n%+v", tc.node, err, cfg, back)
		}
	}
	if _, err := p.AgentConfig("n1", ConfigOptions{LoadBalancers: &LoadBalancerOptions{Prefer: "west"}}); err == nil || !strings.Contains(err.Error(), "loadBalancers.prefer") {
		t.Errorf("an unknown preference: %v", err)
	}
	cfg, err := p.AgentConfig("n1", ConfigOptions{})
	if err != nil || cfg.LoadBalancers != nil {
		t.Errorf("without LoadBalancerOptions: %v, section %+v", err, cfg.LoadBalancers)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("kind: BGPAgentConfig\nasn: 1\nrouterID: 1.2.3.4\npeers: [{name: a, address: 1.2.3.5, asn: 2}]\n"))
	f.Add([]byte("services: [{name: a, vips: [1.2.3.4], check: {url: 'http://x', interval: 1s}}]\n"))
	f.Add([]byte("prefixes: [10.0.0.0/8]\ncommunities: ['1:2:3']\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		// Whatever parses must render and parse back to the same thing.
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-parsing rendered config: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, back)
		}
	})
}
