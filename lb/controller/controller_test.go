package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

const ns = "default"

// pool is a /29 with the API VIP (.0) and a static VIP (.1) reserved: six
// addresses to hand out, .2 to .7.
func pool() lb.Pool {
	return lb.Pool{Ranges: []netip.Prefix{netip.MustParsePrefix("198.19.120.0/29")},
		Reserved: map[netip.Addr]string{
			netip.MustParseAddr("198.19.120.0"): "the API VIP",
			netip.MustParseAddr("198.19.120.1"): "a static VIP",
		}}
}

// replica runs one controller replica until the returned stop is called
// (which waits for it to release the Lease and return).
func replica(t *testing.T, cs kubernetes.Interface, id string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cs, Options{Pool: pool(), Namespace: "kube-system", Identity: id,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("replica", id)})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("replica %s: %v", id, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("replica %s did not stop in 30 s", id)
		}
	}
	t.Cleanup(stop)
	return stop
}

type svcOpt func(*corev1.Service)

func annotate(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func ports(ps ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ps {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint("p", p), Port: p, Protocol: corev1.ProtocolTCP})
		}
	}
}

func create(t *testing.T, cs kubernetes.Interface, name string, opts ...svcOpt) {
	t.Helper()
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name}}}
	ports(80)(s)
	for _, o := range opts {
		o(s)
	}
	if _, err := cs.CoreV1().Services(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service %s: %v", name, err)
	}
}

func addrOf(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	s, err := cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.LoadBalancer.Ingress) == 0 {
		return ""
	}
	return s.Status.LoadBalancer.Ingress[0].IP
}

// waitAddr waits until service name's address is want ("" for none, "*"
// for any).
func waitAddr(t *testing.T, cs kubernetes.Interface, name, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := addrOf(t, cs, name)
		if got == want || (want == "*" && got != "") {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s: address %q after 30 s, want %q", name, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEvent waits for an Event of reason on service name whose message
// contains text, and returns the message.
func waitEvent(t *testing.T, cs kubernetes.Interface, name, reason, text string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		evs, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, e := range evs.Items {
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason == reason && strings.Contains(e.Message, text) && e.Source.Component == Component {
				return e.Message
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("service %s: no %s event with %q; events: %q", name, reason, text, seen)
	return ""
}

// distinct fails when two Services hold one address without sharing it.
func distinct(t *testing.T, cs kubernetes.Interface) map[string]string {
	t.Helper()
	l, err := cs.CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string][]string{}
	out := map[string]string{}
	for _, s := range l.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			by[in.IP] = append(by[in.IP], s.Name+"/"+s.Annotations[lb.AnnotationShare])
			out[s.Name] = in.IP
		}
	}
	for ip, hs := range by {
		if len(hs) < 2 {
			continue
		}
		for _, h := range hs {
			if strings.HasSuffix(h, "/") {
				t.Errorf("address %s handed out twice: %q", ip, hs)
				break
			}
		}
	}
	return out
}

// TestAgainstRealAPIServer runs the controller against a real
// kube-apiserver: lowest free address, requested addresses (annotation
// and spec.loadBalancerIP) and their conflicts, sharing, exhaustion and
// the wait for a released address, type change, a foreign class, and a
// leader change with a conflicting status planted while no replica ran.
func TestAgainstRealAPIServer(t *testing.T) {
	cs := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	stopA := replica(t, cs, "replica-a")

	create(t, cs, "web")
	waitAddr(t, cs, "web", "198.19.120.2")
	waitEvent(t, cs, "web", ReasonAssigned, "198.19.120.2")

	create(t, cs, "asked", annotate(lb.AnnotationAddress, "198.19.120.6"))
	waitAddr(t, cs, "asked", "198.19.120.6")
	create(t, cs, "legacy", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.19.120.5" })
	waitAddr(t, cs, "legacy", "198.19.120.5")

	// Conflicts: a reserved address, one outside the pool, one held.
	create(t, cs, "vip", annotate(lb.AnnotationAddress, "198.19.120.0"))
	waitEvent(t, cs, "vip", ReasonFailed, "reserved: the API VIP")
	create(t, cs, "outside", annotate(lb.AnnotationAddress, "198.18.0.9"))
	waitEvent(t, cs, "outside", ReasonFailed, "not in network.loadBalancerPool")
	create(t, cs, "taken", annotate(lb.AnnotationAddress, "198.19.120.6"))
	waitEvent(t, cs, "taken", ReasonFailed, "held by default/asked")
	create(t, cs, "garbage", annotate(lb.AnnotationAddress, "not-an-ip"))
	waitEvent(t, cs, "garbage", ReasonFailed, "not an IPv4 address")
	for _, n := range []string{"vip", "outside", "taken", "garbage"} {
		if a := addrOf(t, cs, n); a != "" {
			t.Errorf("service %s got %s despite its conflict", n, a)
		}
		if err := cs.CoreV1().Services(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Sharing: same key, disjoint ports → one address; a port in common →
	// an address of its own.
	create(t, cs, "dns-tcp", annotate(lb.AnnotationShare, "dns"), ports(53))
	shared := waitAddr(t, cs, "dns-tcp", "198.19.120.3")
	create(t, cs, "dns-udp", annotate(lb.AnnotationShare, "dns"), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
	})
	waitAddr(t, cs, "dns-udp", shared)
	create(t, cs, "dns-clash", annotate(lb.AnnotationShare, "dns"), ports(53))
	waitAddr(t, cs, "dns-clash", "198.19.120.4")

	// The pool is now full (.2 web, .3 dns, .4 dns-clash, .5 legacy, .6
	// asked, .7 next).
	create(t, cs, "seventh")
	waitAddr(t, cs, "seventh", "198.19.120.7")
	create(t, cs, "eighth")
	waitEvent(t, cs, "eighth", ReasonFailed, "widen spec.network.loadBalancerPool")
	if a := addrOf(t, cs, "eighth"); a != "" {
		t.Fatalf("eighth got %s from a full pool", a)
	}
	// A type change gives the address back (and clears the status); the
	// waiting Service gets it.
	web, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web.Spec.Type = corev1.ServiceTypeClusterIP
	if _, err := cs.CoreV1().Services(ns).Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAddr(t, cs, "web", "")
	waitEvent(t, cs, "web", ReasonReleased, "no longer of type LoadBalancer")
	waitAddr(t, cs, "eighth", "198.19.120.2")

	// A Service of another class is left alone.
	create(t, cs, "foreign", func(s *corev1.Service) { c := "example.com/other"; s.Spec.LoadBalancerClass = &c })
	time.Sleep(2 * time.Second)
	if a := addrOf(t, cs, "foreign"); a != "" {
		t.Errorf("foreign-class service got %s", a)
	}

	before := distinct(t, cs)
	stopA()

	// While no replica runs: a Service created, and a status written by
	// hand claiming an address another Service holds.
	create(t, cs, "during")
	time.Sleep(time.Second) // the younger one
	create(t, cs, "squatter")
	sq, err := cs.CoreV1().Services(ns).Get(ctx, "squatter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sq.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: before["asked"]}}
	if _, err := cs.CoreV1().Services(ns).UpdateStatus(ctx, sq, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Free two addresses for them.
	for _, n := range []string{"seventh", "dns-clash"} {
		if err := cs.CoreV1().Services(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	replica(t, cs, "replica-b")
	during := waitAddr(t, cs, "during", "*")
	deadline := time.Now().Add(30 * time.Second)
	for addrOf(t, cs, "squatter") == before["asked"] && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	squatter := waitAddr(t, cs, "squatter", "*")
	if squatter == before["asked"] || squatter == during {
		t.Errorf("squatter kept %s or took during's %s", squatter, during)
	}
	after := distinct(t, cs)
	for _, n := range []string{"asked", "legacy", "dns-tcp", "dns-udp", "eighth"} {
		if after[n] != before[n] {
			t.Errorf("service %s moved from %s to %s across the leader change", n, before[n], after[n])
		}
	}
	t.Logf("before the leader change: %v; after: %v", before, after)
	lease, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h == nil || *h != "replica-b" {
		t.Errorf("lease holder %v, want replica-b", h)
	}
}
