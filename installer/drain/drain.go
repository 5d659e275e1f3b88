// Package drain cordons, drains and uncordons a Kubernetes node for a
// rolling upgrade, as `kubectl drain` does: every pod is evicted through
// the Eviction API (policy/v1), so PodDisruptionBudgets are honoured.
package drain

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Options tune Drain.
type Options struct {
	// Timeout bounds the whole drain: evictions refused by a
	// PodDisruptionBudget are retried with backoff until then (default
	// DefaultTimeout).
	Timeout time.Duration
	// GracePeriod overrides each pod's termination grace period (nil: the
	// pod's own).
	GracePeriod *int64
	// Logger receives progress (default: discard).
	Logger *slog.Logger
	// Force evicts pods that no controller manages (bare pods), which are
	// not recreated anywhere; without it Drain refuses them.
	Force bool
}

// DefaultTimeout is Drain's default Options.Timeout.
const DefaultTimeout = 5 * time.Minute

// BlockedError is Drain's error when pods are still on the node at the
// timeout (or are refused before any eviction): each entry of Pods is
// "namespace/name: why".
type BlockedError struct {
	Node   string
	Pods   []string
	Reason string
}

func (e *BlockedError) Error() string { return "draining " + e.Node + ": " + e.Reason }

// Cordon marks node unschedulable (spec.unschedulable); a cordoned node is
// left alone.
func Cordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return errors.New("not implemented")
}

// Uncordon makes node schedulable again; a schedulable node is left alone.
func Uncordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return errors.New("not implemented")
}

// Drain evicts every pod from node except DaemonSet-owned and mirror
// (static) pods and waits until they are gone. The node should be
// cordoned first.
func Drain(ctx context.Context, cs kubernetes.Interface, node string, o Options) error {
	return errors.New("not implemented")
}
