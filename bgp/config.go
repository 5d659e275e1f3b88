package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// ConfigKind identifies the agent configuration document.
const ConfigKind = "BGPAgentConfig"

// Config is the node agent's configuration file (YAML), rendered by the
// installer from the inventory (see Plan.AgentConfig) and re-read on SIGHUP.
type Config struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	// Node is the node's name (for logs and status).
	Node string `yaml:"node" json:"node"`
	// ASN is the node's local ASN.
	ASN uint32 `yaml:"asn" json:"asn"`
	// RouterID is a unique IPv4 router ID (the node address).
	RouterID string `yaml:"routerID" json:"routerID"`
	// NextHop is put on every announcement (the node address).
	NextHop string `yaml:"nextHop" json:"nextHop"`
	// StatusSocket is the unix socket `tricenter-bgp status` reads.
	StatusSocket string `yaml:"statusSocket,omitempty" json:"statusSocket,omitempty"`
	// HoldDir keeps the services' holds (`tricenter-bgp hold`), one file
	// per held service (default DefaultHoldDir, see HoldDirectory).
	HoldDir  string          `yaml:"holdDir,omitempty" json:"holdDir,omitempty"`
	Timers   Timers          `yaml:"timers,omitempty" json:"timers"`
	Graceful GracefulRestart `yaml:"gracefulRestart,omitempty" json:"gracefulRestart"`
	Peers    []PeerConfig    `yaml:"peers" json:"peers"`
	// Communities are large communities ("GLOBAL:DATA1:DATA2") put on
	// every announcement.
	Communities []string `yaml:"communities,omitempty" json:"communities,omitempty"`
	// Prefixes are announced for as long as the agent runs (the pod CIDR).
	Prefixes []string `yaml:"prefixes,omitempty" json:"prefixes,omitempty"`
	// Services announce their VIPs (as /32) while healthy. A VIP listed by
	// several services stays announced while any of them is healthy.
	Services []Service `yaml:"services,omitempty" json:"services,omitempty"`
	// LoadBalancers, when set, has the agent watch the cluster's Services
	// of type LoadBalancer and announce their addresses as lb.Announcements
	// decides for this node (see package lb/watch).
	LoadBalancers *LoadBalancerConfig `yaml:"loadBalancers,omitempty" json:"loadBalancers,omitempty"`
}

// LoadBalancerConfig is what the agent needs to announce LoadBalancer
// Services: its credential for the Kubernetes API (list and watch of
// Services and EndpointSlices, nothing else) and the node's place in the
// three centers.
type LoadBalancerConfig struct {
	// Kubeconfig is the agent's own kubeconfig file (default
	// DefaultLoadBalancerKubeconfig).
	Kubeconfig string `yaml:"kubeconfig,omitempty" json:"kubeconfig,omitempty"`
	// Center is the node's center (its topology.kubernetes.io/zone), as
	// the EndpointSlices' zones name it.
	Center string `yaml:"center" json:"center"`
	// CenterRole is that center's role: production, local-dr or remote-dr.
	CenterRole inventory.CenterRole `yaml:"centerRole" json:"centerRole"`
	// Worker is true on a node with the worker role: the nodes that
	// announce a Cluster-policy Service unless it names its nodes.
	Worker bool `yaml:"worker" json:"worker"`
	// Prefer is the preference of a Service without the lb.tricenter.io/prefer
	// annotation: production (default), local or none.
	Prefer lb.Preference `yaml:"prefer,omitempty" json:"prefer,omitempty"`
}

// Node is the lb.Node of the agent's node name on this configuration.
func (c *LoadBalancerConfig) Node(name string) lb.Node {
	return lb.Node{Name: name, Center: c.Center, Role: c.CenterRole, Worker: c.Worker}
}

// Timers are the BGP session timers.
type Timers struct {
	KeepaliveSeconds    int `yaml:"keepaliveSeconds,omitempty" json:"keepaliveSeconds"`
	HoldSeconds         int `yaml:"holdSeconds,omitempty" json:"holdSeconds"`
	ConnectRetrySeconds int `yaml:"connectRetrySeconds,omitempty" json:"connectRetrySeconds"`
}

// GracefulRestart advertises the graceful restart capability so routers
// keep the node's routes while the agent restarts.
type GracefulRestart struct {
	Enabled        bool `yaml:"enabled" json:"enabled"`
	RestartSeconds int  `yaml:"restartSeconds,omitempty" json:"restartSeconds,omitempty"`
}

// PeerConfig is one router session.
type PeerConfig struct {
	Name    string `yaml:"name" json:"name"`
	Address string `yaml:"address" json:"address"`
	ASN     uint32 `yaml:"asn" json:"asn"`
	// Port is the router's BGP port (default 179).
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// PasswordFile holds the TCP MD5 password (the password itself never
	// appears in this file).
	PasswordFile string `yaml:"passwordFile,omitempty" json:"passwordFile,omitempty"`
	// MultihopTTL > 0 allows a router that is not on the node's subnet.
	MultihopTTL int `yaml:"multihopTTL,omitempty" json:"multihopTTL,omitempty"`
}

// Service is a set of VIPs gated by one health check.
type Service struct {
	Name string   `yaml:"name" json:"name"`
	VIPs []string `yaml:"vips" json:"vips"`
	// Check gates the VIPs; without it they are always announced.
	Check *Check `yaml:"check,omitempty" json:"check,omitempty"`
}

// Check is an HTTP GET health check: healthy when it answers 2xx in time.
type Check struct {
	URL      string   `yaml:"url" json:"url"`
	Interval Duration `yaml:"interval,omitempty" json:"interval"`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout"`
	// Rise consecutive successes make a service healthy, Fall consecutive
	// failures unhealthy (defaults 1 and 2).
	Rise int `yaml:"rise,omitempty" json:"rise,omitempty"`
	Fall int `yaml:"fall,omitempty" json:"fall,omitempty"`
	// CAFile verifies an https URL's certificate.
	CAFile string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
}

// APIServerService is the service AgentConfig renders on control-plane
// nodes: the API VIP, gated by the local kube-apiserver's /readyz.
const APIServerService = "kube-apiserver"

// LoadBalancersService is the service AgentConfig renders on every node
// when the cluster has load-balancer VIPs, gated by the local kube-proxy's
// /healthz.
const LoadBalancersService = "load-balancers"

// Defaults for the agent configuration.
const (
	DefaultConnectRetrySeconds = 2
	DefaultCheckInterval       = time.Second
	DefaultCheckTimeout        = 800 * time.Millisecond
	DefaultRise                = 1
	DefaultFall                = 2
	// DefaultLoadBalancerKubeconfig is where the installer writes the
	// agent's kubeconfig (read-only on Services and EndpointSlices).
	DefaultLoadBalancerKubeconfig = "/etc/tricenter/bgp/kubeconfig"
	// DefaultLoadBalancerPrefer is the preference of a Service without
	// the lb.tricenter.io/prefer annotation, unless the configuration
	// says otherwise.
	DefaultLoadBalancerPrefer = lb.PreferProduction
)

// Duration is a time.Duration written as "1s", "250ms".
type Duration struct{ time.Duration }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 500ms or 2s", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes a Go duration string (JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// SetDefaults fills optional fields.
func (c *Config) SetDefaults() {
	if c.APIVersion == "" {
		c.APIVersion = "tricenter.io/v1alpha1"
	}
	if c.Kind == "" {
		c.Kind = ConfigKind
	}
	if c.StatusSocket == "" {
		c.StatusSocket = DefaultStatusSocket
	}
	if c.Timers.HoldSeconds == 0 && c.Timers.KeepaliveSeconds == 0 {
		c.Timers.HoldSeconds, c.Timers.KeepaliveSeconds = 9, 3
	}
	if c.Timers.ConnectRetrySeconds == 0 {
		c.Timers.ConnectRetrySeconds = DefaultConnectRetrySeconds
	}
	if c.NextHop == "" {
		c.NextHop = c.RouterID
	}
	if l := c.LoadBalancers; l != nil {
		if l.Kubeconfig == "" {
			l.Kubeconfig = DefaultLoadBalancerKubeconfig
		}
		if l.Prefer == "" {
			l.Prefer = DefaultLoadBalancerPrefer
		}
	}
	for i := range c.Services {
		ch := c.Services[i].Check
		if ch == nil {
			continue
		}
		if ch.Interval.Duration == 0 {
			ch.Interval.Duration = DefaultCheckInterval
		}
		if ch.Timeout.Duration == 0 {
			ch.Timeout.Duration = min(DefaultCheckTimeout, ch.Interval.Duration)
		}
		if ch.Rise == 0 {
			ch.Rise = DefaultRise
		}
		if ch.Fall == 0 {
			ch.Fall = DefaultFall
		}
	}
}

// Validate reports every problem, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Kind != ConfigKind {
		bad("kind", "is %q: expected %s", c.Kind, ConfigKind)
	}
	if c.ASN == 0 {
		bad("asn", "is not set")
	}
	if a, err := netip.ParseAddr(c.RouterID); err != nil || !a.Is4() {
		bad("routerID", "%q is not an IPv4 address", c.RouterID)
	}
	if a, err := netip.ParseAddr(c.NextHop); err != nil || !a.Is4() {
		bad("nextHop", "%q is not an IPv4 address", c.NextHop)
	}
	if !filepath.IsAbs(c.StatusSocket) {
		bad("statusSocket", "%q is not an absolute path", c.StatusSocket)
	}
	if c.HoldDir != "" && !filepath.IsAbs(c.HoldDir) {
		bad("holdDir", "%q is not an absolute path", c.HoldDir)
	}
	t := c.Timers
	switch {
	case t.HoldSeconds < 3 || t.HoldSeconds > 65535:
		bad("timers.holdSeconds", "is %d: use 3..65535", t.HoldSeconds)
	case t.KeepaliveSeconds < 1 || t.KeepaliveSeconds >= t.HoldSeconds:
		bad("timers.keepaliveSeconds", "is %d: use at least 1 and less than holdSeconds %d", t.KeepaliveSeconds, t.HoldSeconds)
	}
	if t.ConnectRetrySeconds < 1 {
		bad("timers.connectRetrySeconds", "is %d: use at least 1", t.ConnectRetrySeconds)
	}
	if c.Graceful.Enabled && (c.Graceful.RestartSeconds < 1 || c.Graceful.RestartSeconds > 4095) {
		bad("gracefulRestart.restartSeconds", "is %d: use 1..4095", c.Graceful.RestartSeconds)
	}
	if len(c.Peers) == 0 {
		bad("peers", "is empty: list at least one router")
	}
	seen := map[netip.Addr]bool{}
	for i, p := range c.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		a, err := netip.ParseAddr(p.Address)
		if err != nil || !a.Is4() {
			bad(f+".address", "%q is not an IPv4 address", p.Address)
		} else if seen[a] {
			bad(f+".address", "%s is listed twice", a)
		}
		seen[a] = true
		if p.ASN == 0 {
			bad(f+".asn", "is not set")
		}
		if p.Port < 0 || p.Port > 65535 {
			bad(f+".port", "is %d: use 1..65535 (0 means 179)", p.Port)
		}
		if p.MultihopTTL < 0 || p.MultihopTTL > 255 {
			bad(f+".multihopTTL", "is %d: use 0..255", p.MultihopTTL)
		}
		if p.PasswordFile != "" && !filepath.IsAbs(p.PasswordFile) {
			bad(f+".passwordFile", "%q is not an absolute path", p.PasswordFile)
		}
	}
	for i, s := range c.Communities {
		if _, err := ParseLargeCommunity(s); err != nil {
			bad(fmt.Sprintf("communities[%d]", i), "%v", err)
		}
	}
	for i, s := range c.Prefixes {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil || !p.Addr().Is4():
			bad(fmt.Sprintf("prefixes[%d]", i), "%q is not an IPv4 CIDR", s)
		case p.Masked() != p:
			bad(fmt.Sprintf("prefixes[%d]", i), "%s has host bits set: use %s", p, p.Masked())
		}
	}
	names := map[string]bool{}
	for i, s := range c.Services {
		f := fmt.Sprintf("services[%d]", i)
		if s.Name == "" {
			bad(f+".name", "is empty")
		} else if err := CheckServiceName(s.Name); err != nil {
			bad(f+".name", "%v", err)
		} else if names[s.Name] {
			bad(f+".name", "%q is used twice", s.Name)
		}
		names[s.Name] = true
		if len(s.VIPs) == 0 {
			bad(f+".vips", "is empty")
		}
		for j, v := range s.VIPs {
			if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
				bad(fmt.Sprintf("%s.vips[%d]", f, j), "%q is not an IPv4 address", v)
			}
		}
		if ch := s.Check; ch != nil {
			u, err := url.Parse(ch.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(f+".check.url", "%q is not an http(s) URL", ch.URL)
			}
			if ch.Interval.Duration < 10*time.Millisecond {
				bad(f+".check.interval", "is %s: use at least 10ms", ch.Interval)
			}
			if ch.Timeout.Duration <= 0 || ch.Timeout.Duration > ch.Interval.Duration {
				bad(f+".check.timeout", "is %s: use more than 0 and at most the interval %s", ch.Timeout, ch.Interval)
			}
			if ch.Rise < 1 || ch.Fall < 1 {
				bad(f+".check", "rise %d and fall %d must be at least 1", ch.Rise, ch.Fall)
			}
		}
	}
	if l := c.LoadBalancers; l != nil {
		if !filepath.IsAbs(l.Kubeconfig) {
			bad("loadBalancers.kubeconfig", "%q is not an absolute path", l.Kubeconfig)
		}
		if l.Center == "" {
			bad("loadBalancers.center", "is empty: name the node's center (its topology.kubernetes.io/zone)")
		}
		switch l.CenterRole {
		case inventory.RoleProduction, inventory.RoleLocalDR, inventory.RoleRemoteDR:
		default:
			bad("loadBalancers.centerRole", "is %q: use %s, %s or %s", l.CenterRole,
				inventory.RoleProduction, inventory.RoleLocalDR, inventory.RoleRemoteDR)
		}
		if _, err := lb.ParsePreference(string(l.Prefer)); err != nil {
			bad("loadBalancers.prefer", "is %q: use production, local or none", l.Prefer)
		}
	}
	return errors.Join(errs...)
}

// MaxConfigSize bounds the configuration file.
const MaxConfigSize = 1 << 20

// ParseConfig decodes, defaults and validates a configuration document.
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("configuration is larger than %d KiB", MaxConfigSize>>10)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("configuration is empty")
		}
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadConfig reads a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := fsutil.ReadFileLimit(path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("reading agent configuration: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("agent configuration %s: %w", path, err)
	}
	return c, nil
}

// Marshal renders the configuration as YAML.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# tricenter-bgp agent configuration, rendered from the inventory.\n")
	buf.WriteString("# Edit the inventory and re-render; `kill -HUP` the agent to reload.\n")
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

// ConfigOptions tune the agent configuration rendered for a node.
type ConfigOptions struct {
	// APIHealthURL gates the API VIP (default DefaultAPIHealthURL).
	APIHealthURL string
	// APIHealthCA verifies an https APIHealthURL (default DefaultAPIHealthCA;
	// "-" for none).
	APIHealthCA string
	// ProxyHealthURL gates LoadBalancer VIPs (default DefaultProxyHealthURL).
	ProxyHealthURL string
	// CheckInterval for both checks (default DefaultCheckInterval).
	CheckInterval time.Duration
	StatusSocket  string
	PasswordFile  string
	// LoadBalancers, when set, renders the loadBalancers section: the node
	// announces LoadBalancer Services (its center, role and worker role
	// come from the plan).
	LoadBalancers *LoadBalancerOptions
}

// LoadBalancerOptions fill the loadBalancers section AgentConfig renders.
type LoadBalancerOptions struct {
	// Kubeconfig is the agent's kubeconfig on the node (default
	// DefaultLoadBalancerKubeconfig).
	Kubeconfig string
	// Prefer is the cluster's default preference (default
	// DefaultLoadBalancerPrefer).
	Prefer lb.Preference
}

// RestartSeconds is the graceful-restart time advertised by agents:
// hold − keepalive, so a dead agent's routes are gone within the hold time
// whether the router noticed through the hold timer (node down) or a closed
// connection (agent killed, routes kept as stale until the restart time).
func (p *Plan) RestartSeconds() int {
	r := p.HoldSeconds - p.KeepaliveSeconds
	if r < 1 {
		r = 1
	}
	return r
}

// AgentConfig renders the agent configuration for one node.
func (p *Plan) AgentConfig(node string, o ConfigOptions) (*Config, error) {
	n, ok := p.Node(node)
	if !ok {
		return nil, fmt.Errorf("no node named %q takes part in BGP", node)
	}
	if o.APIHealthURL == "" {
		o.APIHealthURL = DefaultAPIHealthURL
	}
	switch o.APIHealthCA {
	case "":
		o.APIHealthCA = DefaultAPIHealthCA
	case "-":
		o.APIHealthCA = ""
	}
	if o.ProxyHealthURL == "" {
		o.ProxyHealthURL = DefaultProxyHealthURL
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.PasswordFile == "" {
		o.PasswordFile = DefaultPasswordFile
	}
	c := &Config{
		Node:         n.Name,
		ASN:          n.ASN,
		RouterID:     n.RouterID.String(),
		NextHop:      n.Address.String(),
		StatusSocket: o.StatusSocket,
		Timers: Timers{
			KeepaliveSeconds: p.KeepaliveSeconds, HoldSeconds: p.HoldSeconds,
			ConnectRetrySeconds: DefaultConnectRetrySeconds,
		},
		Graceful: GracefulRestart{Enabled: p.GracefulRestart},
		Prefixes: []string{n.PodCIDR.String()},
	}
	if p.GracefulRestart {
		c.Graceful.RestartSeconds = p.RestartSeconds()
	}
	for _, pe := range n.Peers {
		pc := PeerConfig{Name: pe.Name, Address: pe.Address.String(), ASN: pe.ASN}
		if pe.Multihop {
			pc.MultihopTTL = MultihopTTL
		}
		if !p.Password.IsZero() {
			pc.PasswordFile = o.PasswordFile
		}
		c.Peers = append(c.Peers, pc)
	}
	for _, lc := range n.Communities {
		c.Communities = append(c.Communities, lc.String())
	}
	if n.ControlPlane && p.APIVIP.IsValid() {
		c.Services = append(c.Services, Service{
			Name: APIServerService, VIPs: []string{p.APIVIP.String()},
			Check: &Check{URL: o.APIHealthURL, CAFile: o.APIHealthCA, Interval: Duration{o.CheckInterval}},
		})
	}
	if len(p.LoadBalancerVIPs) > 0 {
		s := Service{Name: LoadBalancersService, Check: &Check{URL: o.ProxyHealthURL, Interval: Duration{o.CheckInterval}}}
		for _, v := range p.LoadBalancerVIPs {
			s.VIPs = append(s.VIPs, v.String())
		}
		c.Services = append(c.Services, s)
	}
	if lo := o.LoadBalancers; lo != nil {
		c.LoadBalancers = &LoadBalancerConfig{
			Kubeconfig: lo.Kubeconfig, Center: n.Center, CenterRole: n.CenterRole, Worker: n.Worker, Prefer: lo.Prefer,
		}
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("agent configuration for %s: %w", node, err)
	}
	return c, nil
}
