package bgplab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// labRange is where every lab route points; no default route is ever
// added, so nothing leaves the lab.
var labRange = netip.MustParsePrefix("198.18.0.0/15")

// Topology is the network an inventory describes, built out of namespaces:
// one bridge per rack, one namespace per router (attached to the bridges of
// the racks it serves, with the rack gateway address) and one per node
// (attached to its rack's bridge, routing the lab range via its gateway).
type Topology struct {
	Lab     *labnet.Lab
	Routers map[string]*labnet.NS
	Nodes   map[string]*labnet.NS
	Plan    *bgp.Plan
}

// Build creates the topology for plan. Close removes it.
func Build(c *inventory.Cluster, plan *bgp.Plan) (*Topology, error) {
	lab, err := labnet.New()
	if err != nil {
		return nil, err
	}
	t := &Topology{Lab: lab, Routers: map[string]*labnet.NS{}, Nodes: map[string]*labnet.NS{}, Plan: plan}
	if err := t.build(c); err != nil {
		lab.Close()
		return nil, err
	}
	return t, nil
}

func (t *Topology) build(c *inventory.Cluster) error {
	bridges := map[string]*labnet.Bridge{}
	rackOf := map[string]*inventory.Rack{}
	bridge := func(rack string) (*labnet.Bridge, *inventory.Rack, error) {
		r := c.Rack(rack)
		if r == nil {
			return nil, nil, fmt.Errorf("rack %s is not in the inventory", rack)
		}
		if b, ok := bridges[rack]; ok {
			return b, r, nil
		}
		b, err := t.Lab.Bridge(netip.Prefix{})
		if err != nil {
			return nil, nil, err
		}
		bridges[rack], rackOf[rack] = b, r
		return b, r, nil
	}
	for ri, rt := range t.Plan.Routers {
		ns, err := t.Lab.Namespace(fmt.Sprintf("rt%d", ri))
		if err != nil {
			return err
		}
		t.Routers[rt.Name] = ns
		for gi, g := range rt.Groups {
			b, r, err := bridge(g.Rack)
			if err != nil {
				return err
			}
			gw, err := netip.ParseAddr(r.TOR.Gateway)
			if err != nil {
				return fmt.Errorf("rack %s: gateway %q: %w", r.Name, r.TOR.Gateway, err)
			}
			if err := ns.Attach(b, fmt.Sprintf("rack%d", gi), netip.PrefixFrom(gw, g.Range.Bits())); err != nil {
				return err
			}
		}
		if rt.Kind == bgp.RouterCore {
			if err := ns.IP("addr", "add", netip.PrefixFrom(rt.Address, 32).String(), "dev", "lo"); err != nil {
				return err
			}
		}
		if err := setSysctl(ns, "net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
	}
	for ni, n := range t.Plan.Nodes {
		ns, err := t.Lab.Namespace(fmt.Sprintf("n%d", ni))
		if err != nil {
			return err
		}
		t.Nodes[n.Name] = ns
		b, r, err := bridge(n.Rack)
		if err != nil {
			return err
		}
		subnet, _ := netip.ParsePrefix(r.Subnet)
		if err := ns.Attach(b, "eth0", netip.PrefixFrom(n.Address, subnet.Bits())); err != nil {
			return err
		}
		gw, _ := netip.ParseAddr(r.TOR.Gateway)
		if err := ns.Route(labRange, gw); err != nil {
			return err
		}
		// A pod: the first address of the node's pod CIDR.
		if err := ns.IP("addr", "add", netip.PrefixFrom(n.PodCIDR.Addr().Next(), 32).String(), "dev", "lo"); err != nil {
			return err
		}
	}
	return nil
}

// Close removes every namespace and bridge.
func (t *Topology) Close() error { return t.Lab.Close() }

func setSysctl(ns *labnet.NS, key, value string) error {
	out, err := ns.Command(context.Background(), "sysctl", "-qw", key+"="+value).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysctl %s in %s: %w: %s", key, ns.Name, err, out)
	}
	return nil
}

// PodIP is the test pod address the topology puts on a node.
func PodIP(n *bgp.Node) netip.Addr { return n.PodCIDR.Addr().Next() }

// ListenTCP opens a TCP listener inside ns (for health endpoints such as a
// fake apiserver's /readyz on the node's 127.0.0.1). The listener keeps
// working after the calling thread has returned to its own namespace.
func ListenTCP(ns *labnet.NS, addr string) (net.Listener, error) { return ns.Listen("tcp", addr) }

// Ping sends count pings from src inside ns to dst and reports whether all
// were answered.
func Ping(ns *labnet.NS, src, dst netip.Addr) error {
	out, err := ns.Command(context.Background(), "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "-I", src.String(), dst.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s -> %s in %s: %w: %s", src, dst, ns.Name, err, out)
	}
	return nil
}

// WaitEstablished waits until every session of the agent is Established.
func WaitEstablished(ctx context.Context, a *Agent, d time.Duration) (*bgp.Status, error) {
	var st *bgp.Status
	_, err := WaitFor(d, 10*time.Millisecond, func() (bool, error) {
		s, err := a.Status(ctx)
		if err != nil {
			return false, err
		}
		st = s
		if len(s.Sessions) == 0 {
			return false, errors.New("no sessions")
		}
		for _, se := range s.Sessions {
			if !se.Established() {
				return false, fmt.Errorf("session with %s is %s", se.Name, se.State)
			}
		}
		return true, nil
	})
	return st, err
}
