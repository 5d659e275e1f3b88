package lb

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ControllerConfigKind identifies the controller's configuration file.
const ControllerConfigKind = "LoadBalancerControllerConfig"

// ControllerConfigAPIVersion is its version.
const ControllerConfigAPIVersion = "lb.tricenter.io/v1alpha1"

// ControllerConfig is the in-cluster controller's configuration, rendered
// by the installer from the inventory into a ConfigMap the controller's
// pod mounts: the pool and the addresses it must never hand out.
type ControllerConfig struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	// Ranges are spec.network.loadBalancerPool.
	Ranges []string `yaml:"ranges"`
	// Reserved are addresses of the ranges never handed out, with why.
	Reserved []Reservation `yaml:"reserved,omitempty"`
}

// Reservation is one address the controller never hands out.
type Reservation struct {
	Address string `yaml:"address"`
	Reason  string `yaml:"reason"`
}

// ConfigFor is the controller configuration of a pool.
func ConfigFor(p Pool) ControllerConfig {
	c := ControllerConfig{APIVersion: ControllerConfigAPIVersion, Kind: ControllerConfigKind}
	for _, r := range p.Ranges {
		c.Ranges = append(c.Ranges, r.String())
	}
	for a, why := range p.Reserved {
		c.Reserved = append(c.Reserved, Reservation{Address: a.String(), Reason: why})
	}
	sort.Slice(c.Reserved, func(i, j int) bool {
		return netip.MustParseAddr(c.Reserved[i].Address).Less(netip.MustParseAddr(c.Reserved[j].Address))
	})
	return c
}

// Marshal renders c as YAML.
func (c ControllerConfig) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Pool checks c and returns its pool.
func (c ControllerConfig) Pool() (Pool, error) {
	if c.Kind != ControllerConfigKind || c.APIVersion != ControllerConfigAPIVersion {
		return Pool{}, fmt.Errorf("apiVersion/kind %s/%s: want %s/%s", c.APIVersion, c.Kind, ControllerConfigAPIVersion, ControllerConfigKind)
	}
	p := Pool{Reserved: map[netip.Addr]string{}}
	for i, s := range c.Ranges {
		r, err := netip.ParsePrefix(s)
		if err != nil {
			return Pool{}, fmt.Errorf("ranges[%d]: %w", i, err)
		}
		p.Ranges = append(p.Ranges, r)
	}
	for i, r := range c.Reserved {
		a, err := netip.ParseAddr(r.Address)
		if err != nil {
			return Pool{}, fmt.Errorf("reserved[%d].address: %w", i, err)
		}
		p.Reserved[a] = r.Reason
	}
	if _, err := New(p); err != nil {
		return Pool{}, err
	}
	return p, nil
}

// LoadControllerConfig reads the controller's configuration file.
func LoadControllerConfig(path string) (Pool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Pool{}, err
	}
	var c ControllerConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Pool{}, fmt.Errorf("%s: %w", path, err)
	}
	p, err := c.Pool()
	if err != nil {
		return Pool{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ControllerConfigFor renders the controller configuration of a cluster.
func ControllerConfigFor(c *inventory.Cluster, ips *inventory.IPPlan) ([]byte, error) {
	p, err := PoolFor(c, ips)
	if err != nil {
		return nil, err
	}
	return ConfigFor(p).Marshal()
}
