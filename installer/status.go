package installer

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Status is the cluster as observed: nothing in it is assumed from the
// inventory or the last apply.
type Status struct {
	Cluster string `json:"cluster"`
	// Etcd is the health of every planned member (nil: not reachable,
	// see Problems).
	Etcd *etcd.ClusterHealth `json:"etcd,omitempty"`
	// EtcdLeader is where etcd's leader is, and whether it belongs in the
	// production center (etcd.LeaderHome; nil with Etcd).
	EtcdLeader *etcd.LeaderPlacement `json:"etcdLeader,omitempty"`
	// API is /readyz of every control-plane server and of the API VIP.
	API []APIStatus `json:"api"`
	// Nodes are the inventory's servers as Kubernetes sees them.
	Nodes []NodeStatus `json:"nodes"`
	// BGP is every agent's sessions and announcements, by server.
	BGP map[string]*bgp.Status `json:"bgp,omitempty"`
	// BGPNotVerified says, by server, why its agent could not be asked.
	BGPNotVerified map[string]string `json:"bgpNotVerified,omitempty"`
	// LoadBalancers is the LoadBalancer Services and their controller
	// (nil: the cluster has no pool, or the API did not answer, see
	// Problems).
	LoadBalancers *LoadBalancerStatus `json:"loadBalancers,omitempty"`
	// Snapshots is, per center holding scheduled etcd snapshots, the
	// newest one and its age (nil: none scheduled).
	Snapshots []SnapshotCenterStatus `json:"snapshots,omitempty"`
	// Certificates is the certificates' expiry: per kind from the state,
	// and the API server's as served now (nil: not read, see Problems).
	Certificates *CertificateStatus `json:"certificates,omitempty"`
	// Lost names the centers the inventory marks lost; their servers
	// (LostServers) are not checked.
	Lost        []string `json:"lost,omitempty"`
	LostServers []string `json:"lostServers,omitempty"`
	// Problems lists what is not as planned, or could not be checked.
	Problems []string `json:"problems,omitempty"`
	// Warnings lists what is as planned but needs action soon (a
	// certificate within spec.pki.renewBefore of its expiry); they do not
	// make the status fail.
	Warnings []string `json:"warnings,omitempty"`
}

// OK reports whether everything observed is as planned.
func (s *Status) OK() bool { return len(s.Problems) == 0 }

// APIStatus is one API endpoint's readiness.
type APIStatus struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
}

// NodeStatus is one server's Node, judged now by the one health rule
// (package health): Ready condition, a fresh kubelet heartbeat, and the
// server's own boot id where it can be asked.
type NodeStatus struct {
	Name       string `json:"name"`
	Center     string `json:"center"`
	Rack       string `json:"rack"`
	Registered bool   `json:"registered"`
	Ready      bool   `json:"ready"`
	// Reason says why the node is not Ready, or why it was not verified.
	Reason string `json:"reason,omitempty"`
	// Heartbeat is the age of the kubelet's last heartbeat (node Lease
	// renewal) when observed; Boot whether the server's boot id matches
	// the one its kubelet reported ("matches", "differs ...", "not
	// verified (why)").
	Heartbeat time.Duration `json:"heartbeatAge,omitempty"`
	Boot      string        `json:"boot,omitempty"`
	Version   string        `json:"version,omitempty"`
	PodCIDR   string        `json:"podCIDR,omitempty"`
}

// Status observes etcd (per member and center), the API through every
// control-plane server and the VIP, the Nodes and the BGP agents, and
// reports the certificates' expiry (from the state; the API server's as
// served). It does
// not fail when parts are unreachable: those become Problems.
func (e *Engine) Status(ctx context.Context) (*Status, error) {
	st := &Status{Cluster: e.cfg.Cluster.Metadata.Name, BGP: map[string]*bgp.Status{}, Lost: e.cfg.Cluster.LostCenters()}
	for _, h := range e.cfg.Cluster.LostHosts() {
		st.LostServers = append(st.LostServers, h.Name)
	}
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	if cli, err := e.EtcdClient(p); err != nil {
		st.Problems = append(st.Problems, "etcd: "+err.Error())
	} else {
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st.Etcd = cli.Health(hctx, e.Placement().Etcd.Members)
		cancel()
		lp := etcd.LeaderHome(e.cfg.Cluster, e.Placement().Etcd.Members, st.Etcd)
		st.EtcdLeader = &lp
		_ = cli.Close()
		for _, pr := range st.Etcd.Problems {
			st.Problems = append(st.Problems, "etcd: "+pr)
		}
	}
	var urls []APIStatus
	for _, m := range e.Placement().ControlPlane {
		urls = append(urls, APIStatus{Name: m.Name, URL: "https://" + net.JoinHostPort(m.Address, fmt.Sprint(APIPort))})
	}
	if vip := e.IPs().APIVIP; vip.IsValid() {
		urls = append(urls, APIStatus{Name: "API VIP", URL: e.APIServerURL()})
	}
	for _, a := range urls {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		d, err := e.readyz(rctx, a.URL)
		cancel()
		a.Ready, a.Detail = err == nil, d
		if err != nil {
			a.Detail = err.Error()
			st.Problems = append(st.Problems, fmt.Sprintf("API %s: %v", a.Name, err))
		}
		st.API = append(st.API, a)
	}
	if cs, probs, warns, err := e.certificateStatus(ctx, st.API); err != nil {
		st.Problems = append(st.Problems, "certificates: not read ("+err.Error()+")")
	} else {
		st.Certificates = cs
		st.Problems = append(st.Problems, probs...)
		st.Warnings = append(st.Warnings, warns...)
	}
	// One observing manager for the run: new SSH connections, one attempt
	// each, so every answer is the servers' now and a dead server costs
	// one short connect. The nodes and the BGP agents are asked at once.
	m := e.ObserveManager()
	defer m.Close()
	nodes := &Status{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.nodeStatus(ctx, nodes, m)
	}()
	var sts map[string]*bgp.Status
	var errs map[string]error
	hosts, herr := m.Hosts(inventory.Selector{})
	if herr == nil {
		sts, errs = BGPStatuses(ctx, m, hosts)
	}
	if e.cfg.Cluster.Spec.Etcd.Snapshots != nil {
		e.snapshotStatus(ctx, st, m)
	}
	wg.Wait()
	st.Nodes = nodes.Nodes
	st.Problems = append(st.Problems, nodes.Problems...)
	if herr == nil {
		st.BGP = sts
		for _, n := range slices.Sorted(maps.Keys(errs)) {
			if st.BGPNotVerified == nil {
				st.BGPNotVerified = map[string]string{}
			}
			st.BGPNotVerified[n] = errs[n].Error()
			st.Problems = append(st.Problems, fmt.Sprintf("BGP agent on %s: not verified (%v)", n, errs[n]))
		}
		for _, n := range slices.Sorted(maps.Keys(sts)) {
			for _, s := range sts[n].Sessions {
				if !s.Established() {
					st.Problems = append(st.Problems, fmt.Sprintf("BGP %s: session %s (%s) %s", n, s.Name, s.Address, s.State))
				}
			}
		}
	}
	if len(e.IPs().LoadBalancerPool) > 0 {
		e.loadBalancerStatus(ctx, st, sts)
	}
	return st, nil
}

// loadBalancerStatus adds the LoadBalancer Services to st; agents are
// the BGP agents' statuses (those that answered).
func (e *Engine) loadBalancerStatus(ctx context.Context, st *Status, agents map[string]*bgp.Status) {
	cs, err := e.Clientset()
	if err == nil {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var probs, warns []string
		st.LoadBalancers, probs, warns, err = e.observeLoadBalancers(lctx, cs, agents)
		cancel()
		st.Problems = append(st.Problems, probs...)
		st.Warnings = append(st.Warnings, warns...)
	}
	if err != nil {
		st.Problems = append(st.Problems, "load balancers: not verified ("+err.Error()+")")
	}
}

func (e *Engine) nodeStatus(ctx context.Context, st *Status, m *phase.Manager) {
	hosts := e.cfg.Cluster.Hosts()
	names := hostNames(hosts)
	fill := func(h inventory.Host) NodeStatus {
		ns := NodeStatus{Name: h.Name, Center: h.Center.Name, Rack: h.Rack.Name}
		if cidr, ok := e.IPs().PodCIDR(h.Name); ok {
			ns.PodCIDR = cidr.String()
		}
		return ns
	}
	cs, err := e.Clientset()
	var observed []health.Node
	if err == nil {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		observed, err = health.Observe(lctx, cs, names, bootIDs(m), e.cfg.Clock)
		cancel()
	}
	if err != nil {
		st.Problems = append(st.Problems, "nodes: not verified ("+err.Error()+")")
		for _, h := range hosts {
			ns := fill(h)
			ns.Reason = "not verified (the API did not answer)"
			st.Nodes = append(st.Nodes, ns)
		}
		return
	}
	byName := map[string]health.Node{}
	for _, n := range observed {
		byName[n.Name] = n
	}
	for _, h := range hosts {
		ns := fill(h)
		n := byName[h.Name]
		ns.Registered, ns.Ready, ns.Reason, ns.Version = n.Registered, n.Ready, n.Reason, n.Version
		ns.Heartbeat, ns.Boot = n.HeartbeatAge, n.Boot
		st.Nodes = append(st.Nodes, ns)
	}
	st.Problems = append(st.Problems, NodeProblems(e.cfg.Cluster, observed)...)
}
