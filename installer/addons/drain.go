package addons

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
)

// mirrorAnnotation marks the API mirror of a static pod.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// DefaultDrainTimeout bounds DrainAndDelete when timeout is not positive.
const DefaultDrainTimeout = 5 * time.Minute

// DrainAndDelete cordons node, evicts its pods through the Eviction API
// (so PodDisruptionBudgets are respected; an eviction a budget refuses is
// retried until timeout), waits until they are gone and deletes the Node.
// DaemonSet pods and static (mirror) pods are left: the node's agents stop
// them when installer/node removes the kubelet. A Node that does not exist
// is already done. On a Node that is not Ready, pods marked for deletion
// count as gone (their kubelet cannot confirm; deleting the Node lets the
// garbage collector finish them).
func DrainAndDelete(ctx context.Context, cs kubernetes.Interface, node string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nodes := cs.CoreV1().Nodes()
	n, err := nodes.Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Node %s: %w", node, err)
	}
	if !n.Spec.Unschedulable {
		if _, err := nodes.Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`),
			metav1.PatchOptions{FieldManager: "tricenter"}); err != nil {
			return fmt.Errorf("cordoning Node %s: %w", node, err)
		}
	}
	// Ready by the one health rule (condition and a fresh heartbeat): a
	// dead server's Node keeps its last Ready for the grace period.
	h, err := health.ObserveOne(ctx, cs, node, nil, nil)
	if err != nil {
		return err
	}
	ready := h.Ready
	blocked := map[string]string{} // pod → why its eviction was refused
	wait := 100 * time.Millisecond
	var last []corev1.Pod
	for {
		pods, err := podsToEvict(ctx, cs, node, ready)
		if err != nil {
			if ctx.Err() != nil {
				return drainTimeout(node, timeout, last, blocked)
			}
			return err
		}
		last = pods
		if len(pods) == 0 {
			break
		}
		if err := evictAll(ctx, cs, node, pods, blocked); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return drainTimeout(node, timeout, pods, blocked)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
	if err := nodes.Delete(ctx, node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Node %s: %w", node, err)
	}
	return nil
}

// evictCallTimeout bounds one eviction request: client-go itself retries
// an eviction the API refuses with 429 and Retry-After (a
// PodDisruptionBudget), which would otherwise hold a drain round for
// minutes.
const evictCallTimeout = 5 * time.Second

const refused = "a PodDisruptionBudget refuses the eviction"

// evictAll asks for the eviction of every pod not yet terminating, in
// parallel, recording in blocked the pods whose eviction is refused.
func evictAll(ctx context.Context, cs kubernetes.Interface, node string, pods []corev1.Pod, blocked map[string]string) error {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	sem := make(chan struct{}, 8)
	callTimeout := evictCallTimeout
	if d, ok := ctx.Deadline(); ok {
		// Leave time to record why before the drain's deadline.
		callTimeout = min(callTimeout, time.Until(d)/2)
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue // evicted, terminating
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			err := cs.PolicyV1().Evictions(p.Namespace).Evict(cctx, &policyv1.Eviction{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
			})
			key := p.Namespace + "/" + p.Name
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil || apierrors.IsNotFound(err):
				delete(blocked, key)
			case apierrors.IsTooManyRequests(err):
				blocked[key] = refused
			case ctx.Err() != nil:
			case cctx.Err() != nil:
				// Still being retried by the client after a 429.
				blocked[key] = refused
			default:
				errs = append(errs, fmt.Errorf("draining Node %s: evicting pod %s: %w", node, key, err))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func drainTimeout(node string, timeout time.Duration, pods []corev1.Pod, blocked map[string]string) error {
	var left []string
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		if why := blocked[key]; why != "" {
			key += " (" + why + ")"
		} else if p.DeletionTimestamp != nil {
			key += " (terminating)"
		}
		left = append(left, key)
	}
	sort.Strings(left)
	return fmt.Errorf("draining Node %s: pods still there after %v: %s; fix what holds them (or raise the timeout) and re-run",
		node, timeout, strings.Join(left, ", "))
}

// podsToEvict lists the node's pods that drain must see gone.
func podsToEvict(ctx context.Context, cs kubernetes.Interface, node string, ready bool) ([]corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing pods on Node %s: %w", node, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Spec.NodeName != node || skipDrain(&p) {
			continue
		}
		if !ready && p.DeletionTimestamp != nil {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// skipDrain reports pods drain leaves alone: DaemonSet and mirror pods.
func skipDrain(p *corev1.Pod) bool {
	if _, ok := p.Annotations[mirrorAnnotation]; ok {
		return true
	}
	if c := metav1.GetControllerOf(p); c != nil && c.Kind == "DaemonSet" {
		return true
	}
	return false
}
