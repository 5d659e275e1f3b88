package nspawn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// labRouterName is the hostname of the lab's one FRR router.
const labRouterName = "nspawn-lab-router"

// routerConfig renders the bgpd configuration of the lab's router with the
// code behind `tricenter bgp render-frr` (bgp.RenderFRR). The lab has one
// router namespace holding every rack's gateway, so it plays every router
// the inventory's nodes peer with at once: their peer groups are merged
// into one router, which needs them to share one ASN (FRR runs one BGP
// instance per namespace).
func routerConfig(c *inventory.Cluster) ([]byte, *bgp.Plan, error) {
	pl, err := inventory.BuildPlan(c, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("lab router: planning the inventory: %w", err)
	}
	p, err := bgp.Derive(c, pl.IPs(), bgp.Options{Placement: pl.Placement()})
	if err != nil {
		return nil, nil, fmt.Errorf("lab router: %w", err)
	}
	merged, err := mergeRouters(p.Routers)
	if err != nil {
		return nil, nil, err
	}
	lp := *p
	lp.Routers = []bgp.Router{merged}
	var o bgp.FRROptions
	if !p.Password.IsZero() {
		if o.Password, err = p.Password.Resolve(); err != nil {
			return nil, nil, fmt.Errorf("lab router: spec.network.bgp.password: %w", err)
		}
	}
	conf, err := bgp.RenderFRR(&lp, merged.Name, o)
	if err != nil {
		return nil, nil, fmt.Errorf("lab router: %w", err)
	}
	return conf, p, nil
}

// mergeRouters joins the plan's routers into the lab's one router.
func mergeRouters(rs []bgp.Router) (bgp.Router, error) {
	if len(rs) == 0 {
		return bgp.Router{}, errors.New("lab router: no node peers with any router: set network.bgp (mode tor) and every rack's tor.asn and tor.address")
	}
	out := bgp.Router{Name: labRouterName, Kind: rs[0].Kind, Address: rs[0].Address, ASN: rs[0].ASN}
	sites := map[string]bool{}
	for _, r := range rs {
		if r.ASN != out.ASN {
			return bgp.Router{}, fmt.Errorf("lab router: router %s has ASN %d but %s has %d: the lab's one router namespace plays every TOR, so give every racks[].tor.asn the same value", r.Name, r.ASN, rs[0].Name, out.ASN)
		}
		if r.Kind != bgp.RouterTOR {
			return bgp.Router{}, fmt.Errorf("lab router: %s is a %s router: the lab's router plays the racks' TORs: use network.bgp.mode tor", r.Name, r.Kind)
		}
		sites[r.Site] = true
		out.Groups = append(out.Groups, r.Groups...)
	}
	var ss []string
	for s := range sites {
		ss = append(ss, s)
	}
	sort.Strings(ss)
	out.Site = strings.Join(ss, ", ")
	return out, nil
}

// Router is the lab's FRR router (zebra + bgpd in the router namespace),
// or nil when the lab runs without BGP (Config.NoFRR).
func (l *Lab) Router() *bgplab.Router { return l.frr }

// BGPPlan is the BGP plan the lab's router was configured from, or nil.
func (l *Lab) BGPPlan() *bgp.Plan { return l.bgpPlan }

// BGPNeighbor is one BGP session of the lab's router.
type BGPNeighbor struct {
	Address          string
	RemoteAS         uint32
	State            string
	PrefixesReceived int
}

// Established reports whether the session is up.
func (n BGPNeighbor) Established() bool { return n.State == "Established" }

// BGPNeighbors lists the router's sessions (the node agents that
// connected), sorted by address.
func (l *Lab) BGPNeighbors() ([]BGPNeighbor, error) {
	if l.frr == nil {
		return nil, errors.New("the lab runs without FRR (Config.NoFRR)")
	}
	out, err := l.frr.Vty("bgpd", "show bgp ipv4 unicast summary json")
	if err != nil {
		return nil, fmt.Errorf("lab router: %w", err)
	}
	return parseNeighbors([]byte(out))
}

func parseNeighbors(data []byte) ([]BGPNeighbor, error) {
	type peers struct {
		Peers map[string]struct {
			RemoteAS uint32 `json:"remoteAs"`
			State    string `json:"state"`
			PfxRcd   int    `json:"pfxRcd"`
		} `json:"peers"`
	}
	var resp struct {
		peers
		IPv4 *peers `json:"ipv4Unicast"`
	}
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "{}" {
		return nil, nil
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("lab router: parsing the BGP summary: %w", err)
	}
	ps := resp.peers
	if resp.IPv4 != nil {
		ps = *resp.IPv4
	}
	var ns []BGPNeighbor
	for addr, p := range ps.Peers {
		ns = append(ns, BGPNeighbor{Address: addr, RemoteAS: p.RemoteAS, State: p.State, PrefixesReceived: p.PfxRcd})
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].Address < ns[j].Address })
	return ns, nil
}

// BGPRoutes returns the router's BGP table: each prefix with the next hops
// of its valid paths.
func (l *Lab) BGPRoutes() (map[string][]string, error) {
	if l.frr == nil {
		return nil, errors.New("the lab runs without FRR (Config.NoFRR)")
	}
	out, err := l.frr.Vty("bgpd", "show bgp ipv4 unicast json")
	if err != nil {
		return nil, fmt.Errorf("lab router: %w", err)
	}
	return parseBGPTable([]byte(out))
}

func parseBGPTable(data []byte) (map[string][]string, error) {
	var resp struct {
		Routes map[string][]struct {
			Valid    bool `json:"valid"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string][]string{}, nil
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("lab router: parsing the BGP table: %w", err)
	}
	out := map[string][]string{}
	for prefix, paths := range resp.Routes {
		var hops []string
		for _, p := range paths {
			if !p.Valid {
				continue
			}
			for _, nh := range p.Nexthops {
				hops = append(hops, nh.IP)
			}
		}
		if len(hops) > 0 {
			sort.Strings(hops)
			out[prefix] = hops
		}
	}
	return out, nil
}

// KernelRoutes returns the routes zebra installed from BGP in the router
// namespace's kernel table: each prefix with its gateways.
func (l *Lab) KernelRoutes(ctx context.Context) (map[string][]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-j", "-n", l.router.Name, "route", "show", "proto", "bgp").Output()
	if err != nil {
		return nil, fmt.Errorf("lab router: ip route show proto bgp: %w", err)
	}
	return parseKernelRoutes(out)
}

func parseKernelRoutes(data []byte) (map[string][]string, error) {
	out := map[string][]string{}
	if len(bytes.TrimSpace(data)) == 0 {
		return out, nil
	}
	var routes []struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(data, &routes); err != nil {
		return nil, fmt.Errorf("lab router: parsing ip route output: %w", err)
	}
	for _, r := range routes {
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		var gws []string
		if r.Gateway != "" {
			gws = append(gws, r.Gateway)
		}
		for _, nh := range r.Nexthops {
			gws = append(gws, nh.Gateway)
		}
		sort.Strings(gws)
		out[dst] = gws
	}
	return out, nil
}
