package inventory

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Host is a server with the rack, center and site it sits in: the flattened
// view the installer, BMC and BGP code iterate over.
type Host struct {
	*Server
	Rack   *Rack
	Center *Center
	Site   *Site
	// Path is the server's field path, e.g. "spec.racks[3].servers[7]".
	Path string
}

// String names the host.
func (h Host) String() string { return h.Name }

// Addr is the server's node address (zero if it does not parse; Validate
// reports that).
func (h Host) Addr() netip.Addr {
	a, _ := netip.ParseAddr(h.SSH.Address)
	return a
}

// JumpHost is the bastion for this server, or nil for a direct connection.
func (h Host) JumpHost() *JumpHost {
	if h.SSH.JumpHost == JumpNone || h.Center == nil {
		return nil
	}
	return h.Center.JumpHost
}

// Hosts lists every server in file order with its rack, center and site,
// leaving out the servers of lost centers (Center.Lost): they are the
// servers the installer works with. References that do not resolve leave
// the pointers nil.
func (c *Cluster) Hosts() []Host {
	all := c.AllHosts()
	out := all[:0:0]
	for _, h := range all {
		if h.Center == nil || !h.Center.Lost {
			out = append(out, h)
		}
	}
	return out
}

// LostHosts lists the servers of lost centers, in file order.
func (c *Cluster) LostHosts() []Host {
	var out []Host
	for _, h := range c.AllHosts() {
		if h.Center != nil && h.Center.Lost {
			out = append(out, h)
		}
	}
	return out
}

// LostCenters names the centers marked lost, in file order.
func (c *Cluster) LostCenters() []string {
	var out []string
	for _, ctr := range c.Spec.Centers {
		if ctr.Lost {
			out = append(out, ctr.Name)
		}
	}
	return out
}

// MarkLost marks the named centers lost (tricenter restore --lost); a
// name that is not a center is an error naming it.
func (c *Cluster) MarkLost(names []string) error {
	for _, n := range names {
		ctr := c.Center(n)
		if ctr == nil {
			return fmt.Errorf("--lost %s: no center named %q in the inventory", n, n)
		}
		ctr.Lost = true
	}
	return nil
}

// AllHosts lists every server in file order, those of lost centers
// included.
func (c *Cluster) AllHosts() []Host {
	centers := map[string]*Center{}
	for i := range c.Spec.Centers {
		centers[c.Spec.Centers[i].Name] = &c.Spec.Centers[i]
	}
	sites := map[string]*Site{}
	for i := range c.Spec.Sites {
		sites[c.Spec.Sites[i].Name] = &c.Spec.Sites[i]
	}
	n := 0
	for i := range c.Spec.Racks {
		n += len(c.Spec.Racks[i].Servers)
	}
	out := make([]Host, 0, n)
	for i := range c.Spec.Racks {
		r := &c.Spec.Racks[i]
		ctr := centers[r.Center]
		var site *Site
		if ctr != nil {
			site = sites[ctr.Site]
		}
		for j := range r.Servers {
			out = append(out, Host{
				Server: &r.Servers[j], Rack: r, Center: ctr, Site: site,
				Path: fmt.Sprintf("spec.racks[%d].servers[%d]", i, j),
			})
		}
	}
	return out
}

// Host finds a server by name.
func (c *Cluster) Host(name string) (Host, bool) {
	for _, h := range c.Hosts() {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Center finds a center by name.
func (c *Cluster) Center(name string) *Center {
	for i := range c.Spec.Centers {
		if c.Spec.Centers[i].Name == name {
			return &c.Spec.Centers[i]
		}
	}
	return nil
}

// Site finds a site by name.
func (c *Cluster) Site(name string) *Site {
	for i := range c.Spec.Sites {
		if c.Spec.Sites[i].Name == name {
			return &c.Spec.Sites[i]
		}
	}
	return nil
}

// Rack finds a rack by name.
func (c *Cluster) Rack(name string) *Rack {
	for i := range c.Spec.Racks {
		if c.Spec.Racks[i].Name == name {
			return &c.Spec.Racks[i]
		}
	}
	return nil
}

// Selector picks hosts by center, rack, role and name; empty fields match
// everything, and several values in one field match any of them.
type Selector struct {
	Centers []string
	Racks   []string
	Roles   []Role
	Servers []string
}

// Match reports whether h is selected.
func (s Selector) Match(h Host) bool {
	if len(s.Centers) > 0 && (h.Center == nil || !contains(s.Centers, h.Center.Name)) {
		return false
	}
	if len(s.Racks) > 0 && !contains(s.Racks, h.Rack.Name) {
		return false
	}
	if len(s.Servers) > 0 && !contains(s.Servers, h.Name) {
		return false
	}
	if len(s.Roles) > 0 {
		ok := false
		for _, r := range s.Roles {
			if h.HasRole(r) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Select returns the hosts matched by s, in file order. A name in s that
// matches no center, rack or server is an error, so a typo never selects
// nothing silently.
func (c *Cluster) Select(s Selector) ([]Host, error) {
	for _, n := range s.Centers {
		if c.Center(n) == nil {
			return nil, fmt.Errorf("no center named %q in the inventory", n)
		}
	}
	for _, n := range s.Racks {
		if c.Rack(n) == nil {
			return nil, fmt.Errorf("no rack named %q in the inventory", n)
		}
	}
	all := c.Hosts()
	for _, n := range s.Servers {
		found := false
		for _, h := range all {
			if h.Name == n {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("no server named %q in the inventory", n)
		}
	}
	for _, r := range s.Roles {
		if !validRole(r) {
			return nil, fmt.Errorf("unknown role %q: use etcd, control-plane or worker", r)
		}
	}
	var out []Host
	for _, h := range all {
		if s.Match(h) {
			out = append(out, h)
		}
	}
	return out, nil
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func validRole(r Role) bool {
	return r == RoleEtcd || r == RoleControlPlane || r == RoleWorker
}

// Resolve reads the secret a reference points at. Trailing newlines of a
// file are dropped. Errors name the reference, never the value.
func (r SecretRef) Resolve() (string, error) {
	switch {
	case r.Env != "" && r.File != "":
		return "", fmt.Errorf("secret reference sets both env %q and file %q: set one", r.Env, r.File)
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set: export it before running tricenter", r.Env)
		}
		return v, nil
	case r.File != "":
		b, err := os.ReadFile(r.File)
		if err != nil {
			return "", fmt.Errorf("reading secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", fmt.Errorf("no secret reference: set env or file")
}
