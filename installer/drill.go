package installer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
)

// DrillProbes are the Kubernetes checks of a center-loss drill, run while
// the center is down: the API answers /readyz through the VIP (the routers
// move it to a surviving center once the lost servers' BGP sessions time
// out), and every Node outside the lost center stays Ready (asked through a
// surviving control-plane server, so the check does not depend on the VIP).
// Without a control plane in the placement there is nothing to probe.
func (e *Engine) DrillProbes(center string) ([]etcd.Probe, error) {
	if e.cfg.Cluster.Center(center) == nil {
		return nil, fmt.Errorf("center %q is not in the inventory", center)
	}
	var survivor string
	for _, m := range e.Placement().ControlPlane {
		if m.Center != center {
			survivor = m.Address
			break
		}
	}
	if survivor == "" {
		return nil, nil
	}
	var probes []etcd.Probe
	if e.IPs().APIVIP.IsValid() {
		probes = append(probes, &readyzProbe{e: e, url: e.APIServerURL()})
	}
	rc, err := e.restConfig("https://" + net.JoinHostPort(survivor, fmt.Sprint(APIPort)))
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	var watch []string
	for _, h := range e.cfg.Cluster.Hosts() {
		if h.Center.Name != center {
			watch = append(watch, h.Name)
		}
	}
	probes = append(probes, &NodesProbe{cs: cs, names: watch, via: survivor, notReady: map[string]bool{}})
	return probes, nil
}

type readyzProbe struct {
	e   *Engine
	url string
}

func (p *readyzProbe) Name() string { return "API /readyz through the VIP" }

func (p *readyzProbe) Check(ctx context.Context) error {
	_, err := p.e.readyz(ctx, p.url)
	return err
}

// NodesProbe checks that the Nodes outside the lost center stay Ready by
// the one health rule (condition and a fresh heartbeat).
// A failed List (the API briefly unavailable) counts as a failed check;
// NotReady lists the Nodes that were seen NotReady, which a drill must
// never show.
type NodesProbe struct {
	cs    kubernetes.Interface
	names []string
	via   string

	mu       sync.Mutex
	notReady map[string]bool
}

// Name says what is checked and through which server.
func (p *NodesProbe) Name() string {
	return fmt.Sprintf("nodes of the surviving centers Ready (asked through %s)", p.via)
}

// Check lists the Nodes once.
func (p *NodesProbe) Check(ctx context.Context) error {
	// Condition and heartbeat; the servers are not asked for their boot
	// ids every probe.
	nodes, err := health.Observe(ctx, p.cs, p.names, nil, nil)
	if err != nil {
		return fmt.Errorf("asking the API: %w", err)
	}
	var bad []string
	for _, n := range nodes {
		if !n.Ready {
			bad = append(bad, n.Name+" ("+n.Reason+")")
		}
	}
	if len(bad) > 0 {
		p.mu.Lock()
		for _, n := range nodes {
			if !n.Ready {
				p.notReady[n.Name] = true
			}
		}
		p.mu.Unlock()
		return errors.New("not Ready: " + strings.Join(bad, ", "))
	}
	return nil
}

// NotReady lists the surviving centers' Nodes seen NotReady, sorted.
func (p *NodesProbe) NotReady() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.notReady))
	for n := range p.notReady {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// APIReady asks the API for /readyz through the VIP (or the first
// control-plane server without one).
func (e *Engine) APIReady(ctx context.Context) error {
	if e.APIServerURL() == "" {
		return errors.New("no control-plane server in the placement")
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := e.readyz(rctx, e.APIServerURL())
	return err
}
