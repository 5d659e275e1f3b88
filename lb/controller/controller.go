// Package controller is the in-cluster load-balancer controller: it gives
// every Service of type LoadBalancer an address of the inventory's pool
// (status.loadBalancer.ingress), honours a requested address, lets
// Services that say so share one, takes addresses back on delete or type
// change, and tells what it did and what it could not do as Events on the
// Service.
//
// One replica leads at a time (a Lease). A new leader rebuilds its record
// of who holds what from the Services' status before it hands out
// anything, so an address is never given twice across a restart or a
// leader change. The node agents (lb/watch) announce the addresses.
//
// Services with a spec.loadBalancerClass other than Class are left to
// whatever implements that class.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// Class is the spec.loadBalancerClass this controller implements; a
// Service without a class is ours too.
const Class = "lb.tricenter.io/bgp"

// Component names the controller in Events and as the Lease's holder
// prefix.
const Component = "tricenter-lb"

// LeaseName is the Lease the replicas elect a leader with.
const LeaseName = "tricenter-lb"

// Event reasons.
const (
	ReasonAssigned  = "AddressAssigned"
	ReasonFailed    = "AllocationFailed"
	ReasonReleased  = "AddressReleased"
	ReasonTakenBack = "AddressTakenBack"
)

// Options configure the controller.
type Options struct {
	Pool lb.Pool
	// Namespace holds the Lease; Identity is this replica's (its pod
	// name).
	Namespace, Identity string
	// Lease timing (defaults 15 s, 10 s, 2 s as kube-controller-manager).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
	// Elector, when set, receives the leader elector (for a health
	// check: leaderelection.HealthzAdaptor.SetLeaderElection).
	Elector func(*leaderelection.LeaderElector)
}

// Run elects a leader among the replicas and, while this one leads,
// assigns addresses. It returns nil when ctx ends (releasing the Lease)
// and an error when leadership is lost otherwise: the process should then
// exit, so that a new start rebuilds its state from the API.
func Run(ctx context.Context, cs kubernetes.Interface, o Options) error {
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Namespace == "" || o.Identity == "" {
		return errors.New("the controller needs its namespace and identity (POD_NAMESPACE, POD_NAME)")
	}
	if _, err := lb.New(o.Pool); err != nil {
		return err
	}
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer bc.Shutdown()
	rec := bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component})

	var leadErr error
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: LeaseName},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity, EventRecorder: rec},
		},
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            Component,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				o.Logger.Info("Leading", "identity", o.Identity)
				c, err := newController(cs, o, rec)
				if err == nil {
					err = c.run(lctx)
				}
				if err != nil && lctx.Err() == nil {
					leadErr = err
				}
			},
			OnStoppedLeading: func() { o.Logger.Info("No longer leading", "identity", o.Identity) },
			OnNewLeader: func(id string) {
				if id != o.Identity {
					o.Logger.Info("Following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	if o.Elector != nil {
		o.Elector(le)
	}
	le.Run(ctx)
	if leadErr != nil {
		return leadErr
	}
	if ctx.Err() == nil {
		return fmt.Errorf("%s lost the lease %s/%s", o.Identity, o.Namespace, LeaseName)
	}
	return nil
}

var everything = labels.Everything()

type controller struct {
	cs     kubernetes.Interface
	log    *slog.Logger
	rec    record.EventRecorder
	alloc  *lb.Allocator
	lister listerscorev1.ServiceLister
	queue  workqueue.TypedRateLimitingInterface[string]
	// waiting are the Services that got no address: each release of an
	// address queues them again.
	waiting map[string]bool
}

func newController(cs kubernetes.Interface, o Options, rec record.EventRecorder) (*controller, error) {
	a, err := lb.New(o.Pool)
	if err != nil {
		return nil, err
	}
	return &controller{cs: cs, log: o.Logger, rec: rec, alloc: a, waiting: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Component})}, nil
}

// run watches the Services until ctx ends: a fresh informer each time
// this replica becomes leader, the record restored from the Services'
// status before the first assignment, then one worker (the allocator is
// not shared).
func (c *controller) run(ctx context.Context) error {
	defer c.queue.ShutDown()
	f := informers.NewSharedInformerFactory(c.cs, 0)
	inf := f.Core().V1().Services()
	c.lister = inf.Lister()
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(k)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	if err := c.restore(); err != nil {
		return err
	}
	go func() { <-ctx.Done(); c.queue.ShutDown() }()
	for c.next(ctx) {
	}
	return nil
}

// restore records the addresses the Services hold, oldest Service first
// (so that of two Services found on one address, the older keeps it).
// A Service holding an address it may not keep is left unrecorded; its
// sync takes the address back.
func (c *controller) restore() error {
	all, err := c.lister.List(everything)
	if err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool {
		ti, tj := all[i].CreationTimestamp, all[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return all[i].Namespace+"/"+all[i].Name < all[j].Namespace+"/"+all[j].Name
	})
	n := 0
	for _, svc := range all {
		if !ours(svc) {
			continue
		}
		s, err := request(svc)
		if err != nil {
			continue
		}
		for _, addr := range ingressAddrs(svc) {
			if err := c.alloc.Restore(s, addr); err != nil {
				c.log.Warn("Address found on a Service it may not keep", "service", s.Key, "error", err)
				continue
			}
			n++
			break
		}
	}
	c.log.Info("Restored the assignments from the Services' status", "services", n, "free", c.alloc.Free())
	return nil
}

func (c *controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		c.log.Warn("Sync failed, retrying", "service", key, "error", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync brings one Service's status in line with the allocator.
func (c *controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.lister.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		delete(c.waiting, key)
		if addr, held := c.alloc.Addr(key); held {
			c.release(key)
			c.log.Info("Released", "service", key, "address", addr)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !ours(svc) {
		delete(c.waiting, key)
		addr, held := c.alloc.Addr(key)
		c.release(key)
		if held && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			// The API keeps the status after a type change: clear it,
			// so that the nodes withdraw the address.
			if err := c.setIngress(ctx, svc, netip.Addr{}); err != nil {
				return err
			}
			c.rec.Eventf(svc, corev1.EventTypeNormal, ReasonReleased, "Released %s: the Service is no longer of type LoadBalancer", addr)
		}
		return nil
	}
	s, err := request(svc)
	if err != nil {
		c.release(key)
		c.waiting[key] = true
		c.rec.Event(svc, corev1.EventTypeWarning, ReasonFailed, err.Error())
		return c.takeBack(ctx, svc, err.Error())
	}
	if _, held := c.alloc.Addr(key); !held {
		// An address in the status this replica has not recorded (written
		// by a leader that lost the Lease while writing): keep it if the
		// Service may.
		for _, cur := range ingressAddrs(svc) {
			if c.alloc.Restore(s, cur) == nil {
				break
			}
		}
	}
	before, _ := c.alloc.Addr(key)
	addr, err := c.alloc.Assign(s)
	if before.IsValid() && before != addr {
		c.requeueWaiting()
	}
	if err != nil {
		c.waiting[key] = true
		msg := err.Error()
		if errors.Is(err, lb.ErrExhausted) {
			msg = fmt.Sprintf("no address for %s: %v (widen spec.network.loadBalancerPool or delete a LoadBalancer Service)", key, err)
		}
		c.rec.Event(svc, corev1.EventTypeWarning, ReasonFailed, msg)
		c.log.Warn("No address", "service", key, "error", err)
		return c.takeBack(ctx, svc, msg)
	}
	delete(c.waiting, key)
	if cur := ingressAddrs(svc); len(cur) == 1 && cur[0] == addr {
		return nil
	}
	if err := c.setIngress(ctx, svc, addr); err != nil {
		c.release(key)
		return err
	}
	c.log.Info("Assigned", "service", key, "address", addr)
	c.rec.Eventf(svc, corev1.EventTypeNormal, ReasonAssigned, "Assigned %s", addr)
	return nil
}

// release gives back what key holds and queues the Services waiting for
// an address.
func (c *controller) release(key string) {
	if _, held := c.alloc.Addr(key); !held {
		return
	}
	c.alloc.Release(key)
	c.requeueWaiting()
}

func (c *controller) requeueWaiting() {
	for k := range c.waiting {
		c.queue.Add(k)
	}
}

// takeBack clears an address the Service holds but may no longer have.
func (c *controller) takeBack(ctx context.Context, svc *corev1.Service, why string) error {
	cur := ingressAddrs(svc)
	if len(cur) == 0 {
		return nil
	}
	if err := c.setIngress(ctx, svc, netip.Addr{}); err != nil {
		return err
	}
	c.rec.Eventf(svc, corev1.EventTypeWarning, ReasonTakenBack, "Took back %s: %s", cur[0], why)
	return nil
}

// setIngress writes status.loadBalancer.ingress: addr alone, or nothing
// when addr is zero.
func (c *controller) setIngress(ctx context.Context, svc *corev1.Service, addr netip.Addr) error {
	up := svc.DeepCopy()
	up.Status.LoadBalancer.Ingress = nil
	if addr.IsValid() {
		vip := corev1.LoadBalancerIPModeVIP
		up.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr.String(), IPMode: &vip}}
	}
	_, err := c.cs.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{FieldManager: Component})
	if err != nil {
		return fmt.Errorf("service %s/%s: writing its status: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// ours reports whether svc is a LoadBalancer Service of this class.
func ours(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	return svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == Class
}

// request is what the allocator needs of svc.
func request(svc *corev1.Service) (lb.Service, error) {
	key := svc.Namespace + "/" + svc.Name
	s := lb.Service{Key: key, SharingKey: svc.Annotations[lb.AnnotationShare]}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		s.Ports = append(s.Ports, lb.Port{Protocol: proto, Port: p.Port})
	}
	var asked []string
	if v := strings.TrimSpace(svc.Annotations[lb.AnnotationAddress]); v != "" {
		asked = append(asked, v)
	}
	if v := strings.TrimSpace(svc.Spec.LoadBalancerIP); v != "" && !slices.Contains(asked, v) {
		asked = append(asked, v)
	}
	switch len(asked) {
	case 0:
	case 1:
		a, err := netip.ParseAddr(asked[0])
		if err != nil || !a.Is4() {
			return s, fmt.Errorf("service %s asks for %q, which is not an IPv4 address: fix the %s annotation or spec.loadBalancerIP", key, asked[0], lb.AnnotationAddress)
		}
		s.Requested = a
	default:
		return s, fmt.Errorf("service %s asks for two addresses, %s (annotation %s) and %s (spec.loadBalancerIP): keep one", key, asked[0], lb.AnnotationAddress, asked[1])
	}
	return s, nil
}

// ingressAddrs are the IPv4 addresses in svc's status.
func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}
