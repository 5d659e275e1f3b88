package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// DefaultConfigFile is where the installer writes a server's Config.
const DefaultConfigFile = "/etc/tricenter/snapshot.json"

// DefaultTimeout bounds one Take when Config.Timeout is empty.
const DefaultTimeout = 10 * time.Minute

// maxConfigSize bounds the configuration file.
const maxConfigSize = 1 << 20

// Config is what a server's snapshot timer does, written by the installer
// as JSON (DefaultConfigFile). Every field is required but Timeout.
type Config struct {
	// Cluster is the cluster's name (the first part of every ID).
	Cluster string `json:"cluster"`
	// StoredOn is this server's name, StoredCenter its center: recorded
	// in each Meta.
	StoredOn     string `json:"storedOn"`
	StoredCenter string `json:"storedCenter"`
	// Dir is the absolute path of the snapshot directory (see Dir).
	Dir string `json:"dir"`
	// Keep is how many snapshots Prune keeps after each Take (≥ 1).
	Keep int `json:"keep"`
	// Recipient is the public key (EncodeRecipient) snapshots are sealed
	// for; its private half stays in the operator's engine state.
	Recipient string `json:"recipient"`
	// CACert is the etcd client CA bundle; Cert and Key the dedicated
	// snapshot client certificate and its key: absolute paths of PEM
	// files.
	CACert string `json:"caCert"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
	// Sources are the etcd members to take the snapshot from, in the
	// order to try them (the members of the other site).
	Sources []Source `json:"sources"`
	// Timeout bounds one Take (a Go duration such as "10m"; default
	// DefaultTimeout).
	Timeout string `json:"timeout,omitempty"`
}

// Source is an etcd member a snapshot may come from.
type Source struct {
	// Name is the etcd member's name (etcd --name), checked against what
	// the member answers.
	Name string `json:"name"`
	// Center is the member's center.
	Center string `json:"center"`
	// URL is its client URL: https://host:port, no path.
	URL string `json:"url"`
}

// TimeoutDuration is Timeout parsed, or DefaultTimeout when it is empty.
func (c *Config) TimeoutDuration() (time.Duration, error) {
	if c.Timeout == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(c.Timeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout: %q: want a positive duration such as 10m", c.Timeout)
	}
	return d, nil
}

// Validate checks every field; errors name the field (its JSON name).
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, err error) { errs = append(errs, fmt.Errorf("%s: %w", field, err)) }
	for _, f := range []struct{ name, v string }{{"cluster", c.Cluster}, {"storedOn", c.StoredOn}, {"storedCenter", c.StoredCenter}} {
		if err := ValidName(f.v); err != nil {
			bad(f.name, err)
		}
	}
	for _, f := range []struct{ name, v string }{{"dir", c.Dir}, {"caCert", c.CACert}, {"cert", c.Cert}, {"key", c.Key}} {
		if err := absPath(f.v); err != nil {
			bad(f.name, err)
		}
	}
	if c.Keep < 1 {
		bad("keep", fmt.Errorf("%d: keep at least 1 snapshot", c.Keep))
	}
	if _, err := ParseRecipient(c.Recipient); err != nil {
		bad("recipient", err)
	}
	if _, err := c.TimeoutDuration(); err != nil {
		errs = append(errs, err) // it names the field
	}
	if len(c.Sources) == 0 {
		bad("sources", errors.New("no etcd member to take snapshots from"))
	}
	names, urls := map[string]bool{}, map[string]bool{}
	for i, s := range c.Sources {
		field := fmt.Sprintf("sources[%d]", i)
		if err := ValidName(s.Name); err != nil {
			bad(field+".name", err)
		} else if names[s.Name] {
			bad(field+".name", fmt.Errorf("%s is listed twice", s.Name))
		}
		names[s.Name] = true
		if err := ValidName(s.Center); err != nil {
			bad(field+".center", err)
		}
		if err := clientURL(s.URL); err != nil {
			bad(field+".url", err)
		} else if urls[s.URL] {
			bad(field+".url", fmt.Errorf("%s is listed twice", s.URL))
		}
		urls[s.URL] = true
	}
	return errors.Join(errs...)
}

func absPath(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q: want a clean absolute path", p)
	}
	return nil
}

func clientURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q does not parse", s)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("%q: want https://host:port (the snapshot client uses mutual TLS)", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want only https://host:port", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return fmt.Errorf("%q: want https://host:port", s)
	}
	return nil
}

// ParseConfig reads a Config from JSON (unknown fields are errors) and
// validates it.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadConfig reads and validates the configuration file at path; its
// errors name the file and the field.
func LoadConfig(path string) (*Config, error) {
	b, err := fsutil.ReadFileLimit(path, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("reading the snapshot configuration: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot configuration %s: %w", path, err)
	}
	return c, nil
}
