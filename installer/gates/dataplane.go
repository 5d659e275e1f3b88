package gates

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The dataplane gate's workload image (imported on every node, never
// pulled).
const (
	ImageProbe = "probe.oci.tar"
	ProbeImage = "tricenter.io/tricenter-probe:v1"
	// nsPrefix names each run's namespace (a random suffix, so
	// a run never waits for the last one's to terminate).
	nsPrefix  = "tricenter-gates-"
	gateLabel = "tricenter.io/gate"
	// staleGate is the age past which a gate namespace is an interrupted
	// run's leftover (a gate run takes seconds to a few minutes).
	staleGate      = 30 * time.Minute
	probePort      = 8080
	gateFieldOwner = "tricenter"
)

// Dataplane runs the probe: a server pod on one node, a checking pod on a
// node in another rack; it holds when pod to pod without NAT, cluster DNS
// and a Service all answer. Its namespace is removed afterwards.
func Dataplane(ctx context.Context, cs kubernetes.Interface, c *inventory.Cluster, log *slog.Logger) (string, error) {
	srvNode, cliNode, note, err := probePair(c)
	if err != nil {
		return "", err
	}
	removeGateNamespaces(ctx, cs, log) // left by an interrupted run
	ns := nsPrefix + randomSuffix()
	defer func() {
		// The namespace terminates in the background.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := cs.CoreV1().Namespaces().Delete(dctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			log.Warn("Gate namespace not removed", "namespace", ns, "err", err)
		}
	}()
	rep, err := runProbe(ctx, cs, ns, c.Spec.Network.ClusterDomain, srvNode, cliNode)
	if err != nil {
		return "", Permanent(err)
	}
	return rep + note, nil
}

// probePair picks two schedulable Ready nodes in different racks (pods
// on control-plane-only servers are not scheduled there by the taint, but
// gate pods name their node and tolerate it). With one rack left (the
// others' centers lost) it picks two nodes of that rack, and note says
// what is then not verified.
func probePair(c *inventory.Cluster) (server, client, note string, err error) {
	hs := c.Hosts()
	for _, a := range hs {
		for _, b := range hs {
			if a.Rack.Name != b.Rack.Name {
				return a.Name, b.Name, "", nil
			}
		}
	}
	if len(hs) >= 2 {
		return hs[0].Name, hs[1].Name, fmt.Sprintf("; within rack %s, the only one with servers: routing across racks not verified", hs[0].Rack.Name), nil
	}
	return "", "", "", Permanent(errors.New("the inventory has one server: no pod to pod check possible"))
}

// removeGateNamespaces deletes gate namespaces an interrupted run left
// behind (older than staleGate; without waiting for them to terminate).
// Younger ones may belong to a run going on beside this one (Terraform
// applies node resources in parallel).
func removeGateNamespaces(ctx context.Context, cs kubernetes.Interface, log *slog.Logger) {
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: gateLabel + "=true"})
	if err != nil {
		return
	}
	for _, n := range list.Items {
		if n.DeletionTimestamp != nil || time.Since(n.CreationTimestamp.Time) < staleGate {
			continue
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			log.Warn("Old gate namespace not removed", "namespace", n.Name, "err", err)
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func probePod(ns, name, node string, args []string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptrInt64(0),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "probe", Image: ProbeImage, ImagePullPolicy: corev1.PullNever,
				Command: append([]string{"/tricenter-probe"}, args...),
				Ports:   []corev1.ContainerPort{{ContainerPort: probePort}},
				// Within Pod Security's "restricted" profile, so that a
				// gate passes wherever workloads can run and adds no
				// warning to the audit log.
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptrBool(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					RunAsNonRoot:             ptrBool(true),
					RunAsUser:                ptrInt64(65534),
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
}

// runProbe starts a whoami server pod on one node and a checking pod on a
// node in another rack, and reads the checker's report.
func runProbe(ctx context.Context, cs kubernetes.Interface, ns, domain, srvNode, cliNode string) (string, error) {
	if domain == "" {
		domain = "cluster.local"
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{gateLabel: "true"}}},
		metav1.CreateOptions{FieldManager: gateFieldOwner})
	if err != nil {
		return "", fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	// The namespace's default ServiceAccount appears asynchronously;
	// pods are refused until it exists.
	if err := waitFor(ctx, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return "", fmt.Errorf("waiting for the default service account: %w", err)
	}
	pods := cs.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, probePod(ns, "probe-server", srvNode, []string{"serve", "--listen", fmt.Sprintf(":%d", probePort)}),
		metav1.CreateOptions{FieldManager: gateFieldOwner}); err != nil {
		return "", fmt.Errorf("creating the server pod on %s: %w", srvNode, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "probe-server"},
			Ports: []corev1.ServicePort{{Port: probePort, TargetPort: intstr.FromInt32(probePort)}}},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{FieldManager: gateFieldOwner}); err != nil {
		return "", fmt.Errorf("creating the probe Service: %w", err)
	}
	var srvIP string
	if err := waitFor(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "probe-server", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("the server pod on %s failed: %s", srvNode, podReason(p))
		}
		srvIP = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && srvIP != "", nil
	}); err != nil {
		return "", fmt.Errorf("server pod on %s: %w", srvNode, err)
	}
	svcName := fmt.Sprintf("probe.%s.svc.%s", ns, domain)
	args := []string{"check",
		"--peer", fmt.Sprintf("http://%s/whoami", net.JoinHostPort(srvIP, fmt.Sprint(probePort))),
		"--resolve", "kubernetes.default.svc." + domain,
		"--resolve", svcName,
		"--service", fmt.Sprintf("http://%s/whoami", net.JoinHostPort(svcName, fmt.Sprint(probePort))),
		"--timeout", "90s"}
	if _, err := pods.Create(ctx, probePod(ns, "probe-client", cliNode, args), metav1.CreateOptions{FieldManager: gateFieldOwner}); err != nil {
		return "", fmt.Errorf("creating the client pod on %s: %w", cliNode, err)
	}
	var done *corev1.Pod
	if err := waitFor(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, "probe-client", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		done = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	}); err != nil {
		return "", fmt.Errorf("client pod on %s: %w", cliNode, err)
	}
	msg := ""
	for _, s := range done.Status.ContainerStatuses {
		if s.State.Terminated != nil {
			msg = s.State.Terminated.Message
		}
	}
	var rep struct {
		Self    []string `json:"self"`
		Results []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(msg), &rep); err != nil {
		return "", fmt.Errorf("client pod on %s ended %s without a report (%s)", cliNode, done.Status.Phase, podReason(done))
	}
	var parts, bad []string
	for _, x := range rep.Results {
		if x.OK {
			parts = append(parts, x.Name+" ok")
		} else {
			bad = append(bad, x.Name+": "+x.Detail)
		}
	}
	if len(bad) > 0 || done.Status.Phase != corev1.PodSucceeded || len(rep.Results) == 0 {
		return "", fmt.Errorf("from %s to %s: %s", cliNode, srvNode, strings.Join(bad, "; "))
	}
	return fmt.Sprintf("%s → %s: %s", cliNode, srvNode, strings.Join(parts, ", ")), nil
}

func podReason(p *corev1.Pod) string {
	var out []string
	if p.Status.Reason != "" {
		out = append(out, p.Status.Reason+": "+p.Status.Message)
	}
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil {
			out = append(out, w.Reason+": "+w.Message)
		}
		if t := s.State.Terminated; t != nil {
			out = append(out, fmt.Sprintf("exit %d %s", t.ExitCode, t.Reason))
		}
	}
	if len(out) == 0 {
		return string(p.Status.Phase)
	}
	return strings.Join(out, "; ")
}

// waitFor polls cond until it is true, fails, or ctx ends.
func waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(Poll):
		}
	}
}

func ptrInt64(v int64) *int64 { return &v }
func ptrBool(v bool) *bool    { return &v }
