// Package addons applies the cluster's in-cluster objects through the
// Kubernetes API with client-go: the CoreDNS add-on (air-gapped: its image
// is imported on every node by installer/node, no registry) and the node
// labels and taints that carry the topology (region = site, zone = center,
// rack) and the BMC's FRU serial and model. It also drains and deletes
// Nodes for worker removal.
//
// Every object, and the labels tricenter sets on Nodes, is applied with
// server-side apply on every apply (field manager tricenter, conflicts
// forced for the fields tricenter applies and only those), so an
// out-of-band edit of them — CoreDNS scaled to 0, its ConfigMap or RBAC
// changed, a topology label overwritten — is repaired by the next apply,
// while fields other managers own (the kubelet's on a Node, a controller's
// status) stay theirs. An apply that changes nothing writes nothing: a
// change is reported only when the object's resourceVersion moved, so a
// converged re-apply reports none.
package addons

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Step IDs, stable for --only and plan output, in the order Apply runs them.
const (
	IDCoreDNS      = "addons/coredns"
	IDNodeLabels   = "addons/node-labels"
	IDLoadBalancer = "addons/load-balancer"
)

// Defaults for Options.
const (
	DefaultCoreDNSImage    = "registry.k8s.io/coredns/coredns:v1.12.0"
	DefaultCoreDNSReplicas = 2
	defaultDomain          = "cluster.local"
)

// FRU is what a server's BMC reports about its hardware.
type FRU struct {
	Serial string
	Model  string
}

// Options configure Apply.
type Options struct {
	Cluster *inventory.Cluster
	IPs     *inventory.IPPlan
	// CoreDNSImage must be the image imported on the nodes (default
	// DefaultCoreDNSImage).
	CoreDNSImage string
	// CoreDNSReplicas defaults to 2, spread over zones (centers).
	CoreDNSReplicas int32
	// LBImageSHA256 is the sha256 of the load-balancer controller's image
	// archive (lb.oci.tar): a new one rolls the controller's pods.
	LBImageSHA256 string
	// PullPolicy defaults to Never: the image is imported on every node,
	// and there is no registry to pull from.
	PullPolicy corev1.PullPolicy
	// Forward lists where CoreDNS sends names outside the cluster domain:
	// resolver addresses ("198.18.0.53" or "198.18.0.53:53") or
	// "/etc/resolv.conf" (the node's resolver — only where that resolver is
	// inside the lab or datacenter). Empty: no forwarding (air-gapped).
	Forward []string
	// FRU by server name labels nodes with tricenter.io/serial and
	// tricenter.io/model when known.
	FRU map[string]FRU
	// Select picks the servers whose Nodes are labelled (zero: every server).
	Select inventory.Selector
	// WaitForNodes, when positive, waits that long for every selected
	// server's Node to register before labelling; otherwise Nodes not
	// registered yet are skipped with a warning (the next apply labels
	// them).
	WaitForNodes time.Duration
	Logger       *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.Cluster == nil || o.IPs == nil {
		return errors.New("addons.Apply needs Cluster and IPs")
	}
	if o.CoreDNSImage == "" {
		o.CoreDNSImage = DefaultCoreDNSImage
	}
	if o.CoreDNSReplicas <= 0 {
		o.CoreDNSReplicas = DefaultCoreDNSReplicas
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullNever
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !o.IPs.ClusterDNSIP.IsValid() {
		return errors.New("addons: the IP plan has no cluster DNS address")
	}
	for _, f := range o.Forward {
		if err := checkForward(f); err != nil {
			return err
		}
	}
	return nil
}

func checkForward(f string) error {
	if f == "/etc/resolv.conf" {
		return nil
	}
	if _, err := netip.ParseAddr(f); err == nil {
		return nil
	}
	if _, err := netip.ParseAddrPort(f); err == nil {
		return nil
	}
	return fmt.Errorf("CoreDNS forward %q: use a resolver address (IP or IP:port) or /etc/resolv.conf", f)
}

func (o *Options) domain() string {
	if d := o.Cluster.Spec.Network.ClusterDomain; d != "" {
		return d
	}
	return defaultDomain
}

// Apply applies CoreDNS, the node labels and taints, and the
// load-balancer controller. changed lists what
// it created, updated (repaired drift included) or labelled ("created
// Deployment kube-system/coredns", "updated ConfigMap kube-system/coredns");
// a re-apply with nothing to do returns none.
func Apply(ctx context.Context, cs kubernetes.Interface, o Options) (changed []string, err error) {
	var all []string
	for _, id := range []string{IDCoreDNS, IDNodeLabels, IDLoadBalancer} {
		c, err := ApplyStep(ctx, cs, id, o)
		all = append(all, c...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// ApplyStep applies one step of Apply by its ID (IDCoreDNS,
// IDNodeLabels, IDLoadBalancer): the engine's workflow runs each as a phase.
func ApplyStep(ctx context.Context, cs kubernetes.Interface, id string, o Options) (changed []string, err error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	a := &applier{cs: cs, log: o.Logger}
	switch id {
	case IDCoreDNS:
		err = a.coreDNS(ctx, &o)
	case IDNodeLabels:
		err = a.nodeLabels(ctx, &o)
	case IDLoadBalancer:
		err = a.loadBalancer(ctx, &o)
	default:
		return nil, fmt.Errorf("unknown add-on step %q", id)
	}
	if err != nil {
		return a.changed, fmt.Errorf("%s: %w", id, err)
	}
	return a.changed, nil
}
