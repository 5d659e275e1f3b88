package kubeconfig

import (
	"strings"
	"testing"
)

func TestRenderRoundTrip(t *testing.T) {
	c := Config{Cluster: "lab", User: "admin", Server: "https://198.19.120.10:6443",
		CA: []byte("ca-pem"), CertPEM: []byte("cert-pem"), KeyPEM: []byte("key-pem")}
	b, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := REST(b)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != c.Server || string(rc.CAData) != "ca-pem" || string(rc.CertData) != "cert-pem" || string(rc.KeyData) != "key-pem" {
		t.Fatalf("round trip lost data: %+v", rc)
	}
	if !strings.Contains(string(b), "current-context: admin@lab") {
		t.Fatalf("no current context:\n%s", b)
	}
}

func TestRenderRefusesIncomplete(t *testing.T) {
	full := Config{Cluster: "lab", User: "u", Server: "https://x", CA: []byte("c"), CertPEM: []byte("c"), KeyPEM: []byte("k")}
	for name, mut := range map[string]func(*Config){
		"no server": func(c *Config) { c.Server = "" },
		"no ca":     func(c *Config) { c.CA = nil },
		"no key":    func(c *Config) { c.KeyPEM = nil },
		"no user":   func(c *Config) { c.User = "" },
	} {
		c := full
		mut(&c)
		if _, err := Render(c); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}
