// Package health decides, in one place, whether a Kubernetes node is
// Ready: from what is observed now, never from a Node's last word.
//
// A Node keeps its last Ready condition for the node-monitor grace period
// (40–50 s) after its server dies or reboots, and its status.nodeInfo.bootID
// changes only once the kubelet reports from the new boot. So a node is
// Ready only when all of these hold:
//
//   - its Ready condition is True;
//   - its kubelet's heartbeat is fresh: the node Lease's renewTime is at
//     most FreshFactor × the kubelet's renew interval old (the kubelet
//     renews every quarter of the Lease's duration: 10 s of the default 40 s,
//     so 20 s). The Lease's duration itself (40 s) would reproduce the grace
//     period's blindness;
//   - where the server can be asked (over SSH), the Node's bootID is the
//     server's current /proc/sys/kernel/random/boot_id: a server rebooted
//     since its kubelet last reported is not Ready yet. Where it cannot be
//     asked, the verdict says so ("boot id not verified (why)").
//
// The comparison of renewTime with the observer's clock assumes the
// observer and the nodes keep time (NTP); preflight refuses hosts whose
// clocks are more than seconds off.
package health

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LeaseNamespace holds the kubelets' node Leases.
const LeaseNamespace = "kube-node-lease"

// Kubelet defaults behind the heartbeat rule.
const (
	// DefaultLeaseDuration is the kubelet's nodeLeaseDurationSeconds
	// default, used when a Lease does not say.
	DefaultLeaseDuration = 40 * time.Second
	// RenewFraction is the share of the Lease's duration after which the
	// kubelet renews it (kubelet's nodeLeaseRenewIntervalFraction).
	RenewFraction = 0.25
	// FreshFactor is how many renew intervals a heartbeat may be old.
	FreshFactor = 2
)

// BootIDPath is where a Linux server tells its boot id.
const BootIDPath = "/proc/sys/kernel/random/boot_id"

// Boot is what the server itself said about its boot, now.
type Boot struct {
	// ID is the server's current boot id (trimmed); empty when not asked.
	ID string
	// Err says why the server could not be asked (unreachable...).
	Err error
}

// Node is one node's health as observed now.
type Node struct {
	Name string `json:"name"`
	// Registered is false when no Node object exists.
	Registered bool `json:"registered"`
	// Ready is the verdict of the rule (condition, heartbeat, boot id).
	Ready bool `json:"ready"`
	// Reason says why the node is not Ready ("" when it is).
	Reason string `json:"reason,omitempty"`
	// Condition is the Ready condition's status as the Node reports it
	// (True, False, Unknown; "" when absent).
	Condition string `json:"condition,omitempty"`
	// Heartbeat is the node Lease's renewTime (zero: no Lease).
	Heartbeat time.Time `json:"heartbeat,omitempty"`
	// HeartbeatAge is how old the heartbeat was when observed.
	HeartbeatAge time.Duration `json:"heartbeatAge,omitempty"`
	// FreshWithin is the largest heartbeat age that counts as fresh.
	FreshWithin time.Duration `json:"freshWithin,omitempty"`
	// NodeBootID is the boot id the kubelet last reported.
	NodeBootID string `json:"nodeBootID,omitempty"`
	// HostBootID is the server's own boot id, read now ("" when not).
	HostBootID string `json:"hostBootID,omitempty"`
	// Boot is "matches", "differs (rebooted since the kubelet reported)" or
	// "not verified (why)".
	Boot string `json:"boot"`
	// Version is the kubelet's version.
	Version string `json:"version,omitempty"`
	// Labels are the Node's labels (for checks beside health).
	Labels map[string]string `json:"-"`
}

// FreshWithin is the heartbeat age limit for a Lease: FreshFactor renew
// intervals of its duration.
func FreshWithin(l *coordinationv1.Lease) time.Duration {
	d := DefaultLeaseDuration
	if l != nil && l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return time.Duration(float64(d) * RenewFraction * FreshFactor)
}

// Judge applies the rule to one Node (nil: not registered), its Lease
// (nil: none) and what its server said about its boot (nil: not asked).
func Judge(name string, n *corev1.Node, l *coordinationv1.Lease, boot *Boot, now time.Time) Node {
	h := Node{Name: name, Boot: "not verified (server not asked)"}
	if n == nil {
		h.Reason = "not registered"
		return h
	}
	h.Registered = true
	h.Version = n.Status.NodeInfo.KubeletVersion
	h.NodeBootID = n.Status.NodeInfo.BootID
	h.Labels = n.Labels
	var problems []string
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			h.Condition = string(c.Status)
		}
	}
	if h.Condition != string(corev1.ConditionTrue) {
		c := h.Condition
		if c == "" {
			c = "not reported"
		}
		problems = append(problems, "Ready condition "+c)
	}
	h.FreshWithin = FreshWithin(l)
	switch {
	case l == nil:
		problems = append(problems, "no heartbeat (no Lease in "+LeaseNamespace+")")
	case l.Spec.RenewTime == nil:
		problems = append(problems, "no heartbeat (the Lease was never renewed)")
	default:
		h.Heartbeat = l.Spec.RenewTime.Time
		h.HeartbeatAge = max(now.Sub(h.Heartbeat), 0)
		if h.HeartbeatAge > h.FreshWithin {
			problems = append(problems, fmt.Sprintf("kubelet heartbeat %v old (fresh within %v)",
				h.HeartbeatAge.Round(time.Second), h.FreshWithin))
		}
	}
	switch {
	case boot == nil:
	case boot.Err != nil:
		h.Boot = "not verified (" + boot.Err.Error() + ")"
	case boot.ID == "":
		h.Boot = "not verified (the server told no boot id)"
	default:
		h.HostBootID = boot.ID
		if boot.ID == h.NodeBootID {
			h.Boot = "matches"
		} else {
			h.Boot = "differs (rebooted since the kubelet reported)"
			problems = append(problems, "server rebooted since its kubelet last reported (boot id "+
				short(h.NodeBootID)+" reported, "+short(boot.ID)+" now)")
		}
	}
	h.Ready = len(problems) == 0
	h.Reason = strings.Join(problems, "; ")
	return h
}

func short(id string) string {
	if id == "" {
		return "none"
	}
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// BootReader asks servers for their current boot id (see BootIDPath);
// servers it could not ask get a Boot with Err set.
type BootReader func(ctx context.Context, names []string) map[string]*Boot

// Observe lists the Nodes and their Leases now, asks the servers for their
// boot ids through boots (nil: not asked) and judges every name. A failed
// List is an error: nothing is assumed.
func Observe(ctx context.Context, cs kubernetes.Interface, names []string, boots BootReader, now func() time.Time) ([]Node, error) {
	if now == nil {
		now = time.Now
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	leases, err := cs.CoordinationV1().Leases(LeaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing node Leases: %w", err)
	}
	var bootOf map[string]*Boot
	if boots != nil {
		bootOf = boots(ctx, names)
	}
	// Observed after the reads: a heartbeat is judged by its age when the
	// answers were in hand.
	t := now()
	byNode := map[string]*corev1.Node{}
	for i := range nodes.Items {
		byNode[nodes.Items[i].Name] = &nodes.Items[i]
	}
	byLease := map[string]*coordinationv1.Lease{}
	for i := range leases.Items {
		byLease[leases.Items[i].Name] = &leases.Items[i]
	}
	out := make([]Node, 0, len(names))
	for _, n := range names {
		var b *Boot
		if boots != nil {
			b = bootOf[n]
			if b == nil {
				b = &Boot{Err: fmt.Errorf("server not asked")}
			}
		}
		out = append(out, Judge(n, byNode[n], byLease[n], b, t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ObserveOne judges one server's Node, read with Get (the provider's
// tricenter_node) instead of a List of all.
func ObserveOne(ctx context.Context, cs kubernetes.Interface, name string, boots BootReader, now func() time.Time) (Node, error) {
	if now == nil {
		now = time.Now
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	var node *corev1.Node
	switch {
	case err == nil:
		node = n
	case apierrors.IsNotFound(err):
	default:
		return Node{Name: name}, fmt.Errorf("reading Node %s: %w", name, err)
	}
	var lease *coordinationv1.Lease
	if node != nil {
		l, err := cs.CoordinationV1().Leases(LeaseNamespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			lease = l
		case apierrors.IsNotFound(err):
		default:
			return Node{Name: name}, fmt.Errorf("reading the Lease of %s: %w", name, err)
		}
	}
	var b *Boot
	if boots != nil && node != nil {
		b = boots(ctx, []string{name})[name]
		if b == nil {
			b = &Boot{Err: fmt.Errorf("server not asked")}
		}
	}
	return Judge(name, node, lease, b, now()), nil
}
