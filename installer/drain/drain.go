// Package drain cordons, drains and uncordons a Kubernetes node for a
// rolling upgrade, as `kubectl drain` does: every pod is evicted through
// the Eviction API (policy/v1), so PodDisruptionBudgets are honoured — an
// eviction a budget refuses (429) is retried with backoff until the
// timeout, and then the error names each pod still there and why.
// DaemonSet pods and static (mirror) pods stay: the node's agents own
// them. Pods no controller manages are refused unless Options.Force, as
// kubectl drain refuses them without --force: nothing would recreate
// them.
package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
)

// Options tune Drain.
type Options struct {
	// Timeout bounds the whole drain: evictions refused by a
	// PodDisruptionBudget are retried with backoff until then (default
	// DefaultTimeout).
	Timeout time.Duration
	// GracePeriod overrides each evicted pod's termination grace period
	// in seconds (nil: the pod's own).
	GracePeriod *int64
	// Logger receives progress (default: discard).
	Logger *slog.Logger
	// Force evicts pods that no controller manages (bare pods), which
	// nothing recreates; without it Drain refuses them before evicting
	// anything.
	Force bool
}

// DefaultTimeout is Drain's default Options.Timeout.
const DefaultTimeout = 5 * time.Minute

// FieldManager is the field manager of Cordon's and Uncordon's patches.
const FieldManager = "tricenter"

// BlockedError is Drain's error when pods stay on the node: at the
// timeout (each eviction a PodDisruptionBudget refused, each pod still
// terminating) or, before any eviction, for pods no controller manages
// without Options.Force. Each entry of Pods is "namespace/name: why".
type BlockedError struct {
	Node   string
	Pods   []string
	Reason string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("draining Node %s: %s: %s", e.Node, e.Reason, strings.Join(e.Pods, "; "))
}

// Cordon marks node unschedulable (spec.unschedulable); a cordoned node is
// left alone.
func Cordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return setUnschedulable(ctx, cs, node, true)
}

// Uncordon makes node schedulable again; a schedulable node is left alone.
func Uncordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return setUnschedulable(ctx, cs, node, false)
}

func setUnschedulable(ctx context.Context, cs kubernetes.Interface, node string, on bool) error {
	verb := "uncordoning"
	if on {
		verb = "cordoning"
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%s Node %s: no such Node (kubectl get nodes lists them)", verb, node)
		}
		return fmt.Errorf("%s Node %s: %w", verb, node, err)
	}
	if n.Spec.Unschedulable == on {
		return nil
	}
	// A merge patch of the one field (null removes it, as kubectl
	// uncordon leaves it).
	patch := `{"spec":{"unschedulable":true}}`
	if !on {
		patch = `{"spec":{"unschedulable":null}}`
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("%s Node %s: %w", verb, node, err)
	}
	return nil
}

// Backoff of a refused eviction: doubled from minBackoff up to maxBackoff.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 8 * time.Second
)

// evictCallTimeout bounds one eviction request. client-go itself retries
// a 429 that carries Retry-After (a budget the disruption controller has
// not processed yet: 10 s, ten times), which would hold the drain for
// minutes without a word.
const evictCallTimeout = 5 * time.Second

// target is a pod Drain waits for.
type target struct {
	pod     corev1.Pod
	key     string // namespace/name
	evicted bool
	next    time.Time // next eviction attempt
	backoff time.Duration
	why     string // why it is still there
}

// Drain evicts every pod from node (DaemonSet and mirror pods excepted)
// and waits until they are gone — deleted, or replaced by a pod of the
// same name with another UID. Cordon the node first, or new pods may land
// on it meanwhile. On a node that is not Ready (its kubelet cannot confirm
// deletions) an evicted pod counts as gone once it is terminating.
func Drain(ctx context.Context, cs kubernetes.Interface, node string, o Options) error {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("draining Node %s: no such Node (kubectl get nodes lists them)", node)
		}
		return fmt.Errorf("draining Node %s: %w", node, err)
	}
	if !n.Spec.Unschedulable {
		log.Warn("Node is not cordoned: new pods may land on it while it drains", "node", node)
	}
	h, err := health.ObserveOne(ctx, cs, node, nil, nil)
	if err != nil {
		return fmt.Errorf("draining Node %s: %w", node, err)
	}
	pods, err := podsOn(ctx, cs, node)
	if err != nil {
		return err
	}
	sel := selectPods(pods, o.Force)
	for _, s := range sel.skipped {
		log.Debug("Leaving pod", "node", node, "pod", s)
	}
	if len(sel.bare) > 0 {
		return &BlockedError{Node: node, Pods: sel.bare,
			Reason: "pods no controller manages would not be recreated anywhere: delete them, or drain with Force to evict them anyway"}
	}
	targets := map[types.UID]*target{}
	for _, p := range sel.evict {
		targets[p.UID] = &target{pod: p, key: p.Namespace + "/" + p.Name, backoff: minBackoff}
	}
	log.Info("Draining Node", "node", node, "pods", len(targets), "timeout", o.Timeout)
	start := time.Now()
	for {
		now := time.Now()
		for _, tg := range sortedTargets(targets) {
			if tg.evicted || tg.pod.DeletionTimestamp != nil || now.Before(tg.next) {
				continue
			}
			if err := evict(ctx, cs, tg, o.GracePeriod, log, node); err != nil {
				return err
			}
		}
		if err := refresh(ctx, cs, node, targets, h.Ready); err != nil && ctx.Err() == nil {
			return err
		}
		if len(targets) == 0 {
			log.Info("Node drained", "node", node, "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if ctx.Err() != nil {
			return blocked(ctx, node, o.Timeout, targets)
		}
		select {
		case <-ctx.Done():
			return blocked(ctx, node, o.Timeout, targets)
		case <-time.After(wakeAfter(targets)):
		}
	}
}

// evict asks for one eviction and records the outcome in tg. Only an error
// that retrying cannot fix is returned.
func evict(ctx context.Context, cs kubernetes.Interface, tg *target, grace *int64, log *slog.Logger, node string) error {
	callTimeout := evictCallTimeout
	if d, ok := ctx.Deadline(); ok {
		callTimeout = min(callTimeout, time.Until(d)/2) // leave time to say why
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: tg.pod.Name, Namespace: tg.pod.Namespace}}
	// The UID precondition: never evict a replacement of the same name.
	ev.DeleteOptions = &metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: metav1.NewUIDPreconditions(string(tg.pod.UID))}
	if tg.why == "" {
		log.Info("Evicting pod", "node", node, "pod", tg.key)
	}
	err := cs.PolicyV1().Evictions(tg.pod.Namespace).Evict(cctx, ev)
	switch {
	case err == nil:
		tg.evicted, tg.why = true, "evicted, terminating"
		log.Info("Pod evicted", "node", node, "pod", tg.key)
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone already, or replaced (the UID precondition failed).
		tg.evicted, tg.why = true, "gone"
		return nil
	case apierrors.IsTooManyRequests(err):
		why := refusal(ctx, cs, &tg.pod, err)
		if why != tg.why {
			log.Warn("Eviction refused: retrying", "node", node, "pod", tg.key, "reason", why)
		}
		tg.why = why
	case ctx.Err() != nil:
		return nil
	case cctx.Err() != nil:
		// client-go is waiting out a Retry-After: a budget the disruption
		// controller has not processed yet.
		tg.why = refusal(ctx, cs, &tg.pod, nil)
	case apierrors.IsInternalError(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) || !isStatus(err):
		// Transient, or a problem someone may fix meanwhile (a pod with
		// two budgets answers 500).
		why := "eviction failed: " + err.Error()
		if why != tg.why {
			log.Warn("Eviction failed: retrying", "node", node, "pod", tg.key, "err", err)
		}
		tg.why = why
	default:
		return fmt.Errorf("draining Node %s: evicting pod %s: %w", node, tg.key, err)
	}
	tg.next = time.Now().Add(tg.backoff)
	tg.backoff = min(2*tg.backoff, maxBackoff)
	return nil
}

func isStatus(err error) bool {
	var s apierrors.APIStatus
	return errors.As(err, &s)
}

// refusal says why an eviction was refused: the budget that refused it
// (from the 429's cause, else the budgets selecting the pod).
func refusal(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, err error) string {
	var cause string
	if s, ok := err.(apierrors.APIStatus); ok && s.Status().Details != nil {
		for _, c := range s.Status().Details.Causes {
			if c.Type == policyv1.DisruptionBudgetCause {
				cause = c.Message
			}
		}
	}
	pdbs := budgetsOf(ctx, cs, pod)
	switch {
	case len(pdbs) == 1 && strings.Contains(cause, "still being processed"):
		return fmt.Sprintf("PodDisruptionBudget %s/%s is not processed yet by the disruption controller (is kube-controller-manager running?)", pod.Namespace, pdbs[0].Name)
	case len(pdbs) == 1:
		b := pdbs[0]
		return fmt.Sprintf("PodDisruptionBudget %s/%s allows no disruption (%d healthy of %d desired, %d expected)",
			pod.Namespace, b.Name, b.Status.CurrentHealthy, b.Status.DesiredHealthy, b.Status.ExpectedPods)
	case cause != "":
		return "a PodDisruptionBudget refuses the eviction: " + cause
	case err != nil:
		return "eviction refused: " + err.Error()
	}
	return "eviction pending: the API server asks to retry later"
}

// budgetsOf lists the PodDisruptionBudgets selecting pod (best effort).
func budgetsOf(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) []policyv1.PodDisruptionBudget {
	list, err := cs.PolicyV1().PodDisruptionBudgets(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []policyv1.PodDisruptionBudget
	for _, b := range list.Items {
		s, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil || s.Empty() || !s.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, b)
	}
	return out
}

// podsOn lists the pods bound to node.
func podsOn(ctx context.Context, cs kubernetes.Interface, node string) ([]corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("draining Node %s: listing its pods: %w", node, err)
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if p.Spec.NodeName == node { // fakes ignore field selectors
			out = append(out, p)
		}
	}
	return out, nil
}

// refresh drops the targets that are gone: deleted, replaced by a pod
// with another UID, or (on a node that is not Ready) terminating.
func refresh(ctx context.Context, cs kubernetes.Interface, node string, targets map[types.UID]*target, ready bool) error {
	pods, err := podsOn(ctx, cs, node)
	if err != nil {
		return err
	}
	now := map[types.UID]corev1.Pod{}
	for _, p := range pods {
		now[p.UID] = p
	}
	for uid, tg := range targets {
		p, ok := now[uid]
		if !ok || (!ready && p.DeletionTimestamp != nil) {
			delete(targets, uid)
			continue
		}
		tg.pod = p
		if p.DeletionTimestamp != nil {
			tg.why = "terminating (deletion requested " + p.DeletionTimestamp.UTC().Format(time.RFC3339) + ")"
		}
	}
	return nil
}

// wakeAfter is when the next eviction attempt is due, at least 100 ms and
// at most 1 s (pods being deleted are polled).
func wakeAfter(targets map[types.UID]*target) time.Duration {
	d := time.Second
	now := time.Now()
	for _, tg := range targets {
		if !tg.evicted && tg.pod.DeletionTimestamp == nil {
			d = min(d, tg.next.Sub(now))
		}
	}
	return max(d, 100*time.Millisecond)
}

func sortedTargets(targets map[types.UID]*target) []*target {
	out := make([]*target, 0, len(targets))
	for _, tg := range targets {
		out = append(out, tg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// blocked is the error for the pods still there when ctx ended.
func blocked(ctx context.Context, node string, timeout time.Duration, targets map[types.UID]*target) error {
	var pods []string
	for _, tg := range sortedTargets(targets) {
		why := tg.why
		if why == "" {
			why = "not evicted yet"
		}
		pods = append(pods, tg.key+": "+why)
	}
	reason := fmt.Sprintf("%d pod(s) still there after %s", len(pods), timeout)
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("draining Node %s: %w with %d pod(s) still there: %s", node, ctx.Err(), len(pods), strings.Join(pods, "; "))
	}
	return &BlockedError{Node: node, Pods: pods, Reason: reason}
}

// selection is what Drain does with each pod of a node.
type selection struct {
	evict   []corev1.Pod
	skipped []string // "namespace/name: why", left on the node
	bare    []string // "namespace/name: why", refused without Force
}

// mirrorAnnotation marks the API mirror of a static pod.
const mirrorAnnotation = corev1.MirrorPodAnnotationKey

// selectPods sorts a node's pods: DaemonSet and mirror pods stay, bare
// pods that have not finished are refused unless force, the others are
// evicted.
func selectPods(pods []corev1.Pod, force bool) selection {
	var s selection
	sort.Slice(pods, func(i, j int) bool {
		return pods[i].Namespace+"/"+pods[i].Name < pods[j].Namespace+"/"+pods[j].Name
	})
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		if _, ok := p.Annotations[mirrorAnnotation]; ok {
			s.skipped = append(s.skipped, key+": static pod (its kubelet runs it from a manifest)")
			continue
		}
		c := metav1.GetControllerOf(&p)
		switch {
		case c != nil && c.Kind == "DaemonSet":
			s.skipped = append(s.skipped, key+": DaemonSet pod (DaemonSet "+c.Name+" would recreate it)")
			continue
		case c == nil && !force && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed:
			// A finished bare pod runs nothing: evicting it loses nothing.
			s.bare = append(s.bare, key+": no controller")
			continue
		}
		s.evict = append(s.evict, p)
	}
	return s
}
