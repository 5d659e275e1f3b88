package health

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakekube "k8s.io/client-go/kubernetes/fake"
)

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func node(name, ready, bootID string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.NodeInfo.BootID = bootID
	n.Status.NodeInfo.KubeletVersion = "v1.33.13"
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionStatus(ready)}}
	}
	return n
}

func lease(name string, renewed time.Time, seconds int32) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: LeaseNamespace}}
	if seconds > 0 {
		l.Spec.LeaseDurationSeconds = &seconds
	}
	if !renewed.IsZero() {
		l.Spec.RenewTime = &metav1.MicroTime{Time: renewed}
	}
	return l
}

func TestFreshWithin(t *testing.T) {
	if got := FreshWithin(nil); got != 20*time.Second {
		t.Errorf("default: %v, want 20s (2 × the kubelet's 10 s renew interval)", got)
	}
	if got := FreshWithin(lease("a", t0, 40)); got != 20*time.Second {
		t.Errorf("40 s Lease: %v, want 20s", got)
	}
	if got := FreshWithin(lease("a", t0, 60)); got != 30*time.Second {
		t.Errorf("60 s Lease: %v, want 30s", got)
	}
}

func TestJudge(t *testing.T) {
	const boot1, boot2 = "11111111-aaaa", "22222222-bbbb"
	for _, tc := range []struct {
		name     string
		node     *corev1.Node
		lease    *coordinationv1.Lease
		boot     *Boot
		ready    bool
		reason   string // substring of the reason
		bootWord string // prefix of Boot
	}{
		{"healthy", node("w", "True", boot1), lease("w", t0.Add(-5*time.Second), 40), &Boot{ID: boot1}, true, "", "matches"},
		{"healthy at the limit", node("w", "True", boot1), lease("w", t0.Add(-20*time.Second), 40), &Boot{ID: boot1}, true, "", "matches"},
		// The bug: the condition still says True for the grace period
		// after the server died; the Lease's 40 s duration would too.
		{"stale heartbeat, condition still True", node("w", "True", boot1), lease("w", t0.Add(-21*time.Second), 40), nil, false, "heartbeat 21s old (fresh within 20s)", "not verified"},
		{"stale past the lease duration", node("w", "True", boot1), lease("w", t0.Add(-45*time.Second), 40), nil, false, "heartbeat 45s old", "not verified"},
		{"rebooted, kubelet not reported yet", node("w", "True", boot1), lease("w", t0.Add(-time.Second), 40), &Boot{ID: boot2}, false, "rebooted since its kubelet last reported (boot id 11111111 reported, 22222222 now)", "differs"},
		{"server unreachable: boot not verified", node("w", "True", boot1), lease("w", t0.Add(-time.Second), 40), &Boot{Err: errors.New("ssh: no route to host")}, true, "", "not verified (ssh: no route to host)"},
		{"condition False", node("w", "False", boot1), lease("w", t0, 40), &Boot{ID: boot1}, false, "Ready condition False", "matches"},
		{"condition Unknown", node("w", "Unknown", boot1), lease("w", t0, 40), nil, false, "Ready condition Unknown", "not verified"},
		{"no condition", node("w", "", boot1), lease("w", t0, 40), nil, false, "Ready condition not reported", "not verified"},
		{"no lease", node("w", "True", boot1), nil, nil, false, "no heartbeat (no Lease", "not verified"},
		{"lease never renewed", node("w", "True", boot1), lease("w", time.Time{}, 40), nil, false, "never renewed", "not verified"},
		{"not registered", nil, nil, nil, false, "not registered", "not verified"},
		{"everything wrong at once", node("w", "False", boot1), lease("w", t0.Add(-time.Minute), 40), &Boot{ID: boot2}, false, "Ready condition False; kubelet heartbeat 1m0s old (fresh within 20s); server rebooted", "differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Judge("w", tc.node, tc.lease, tc.boot, t0)
			if h.Ready != tc.ready {
				t.Errorf("Ready %v, want %v (reason %q)", h.Ready, tc.ready, h.Reason)
			}
			if tc.ready && h.Reason != "" {
				t.Errorf("a Ready node has a reason: %q", h.Reason)
			}
			if !strings.Contains(h.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", h.Reason, tc.reason)
			}
			if !strings.HasPrefix(h.Boot, tc.bootWord) {
				t.Errorf("boot %q, want %q…", h.Boot, tc.bootWord)
			}
			if tc.node != nil && !h.Registered {
				t.Error("a Node that exists reads unregistered")
			}
		})
	}
}

// TestObserve runs the rule over a fake API server's Nodes and Leases.
func TestObserve(t *testing.T) {
	cs := fakekube.NewClientset(
		node("a", "True", "boot-a"), lease("a", t0.Add(-3*time.Second), 40),
		node("b", "True", "boot-b"), lease("b", t0.Add(-30*time.Second), 40),
		node("c", "True", "boot-c-old"), lease("c", t0.Add(-2*time.Second), 40),
	)
	asked := []string{}
	boots := func(_ context.Context, names []string) map[string]*Boot {
		asked = append(asked, names...)
		return map[string]*Boot{"a": {ID: "boot-a"}, "b": {ID: "boot-b"}, "c": {ID: "boot-c-new"}}
	}
	got, err := Observe(context.Background(), cs, []string{"c", "b", "a", "gone"}, boots, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 4 {
		t.Errorf("servers asked for their boot id: %v, want all 4 names", asked)
	}
	want := map[string]bool{"a": true, "b": false, "c": false, "gone": false}
	if len(got) != 4 {
		t.Fatalf("got %d nodes, want 4", len(got))
	}
	for i, h := range got {
		if i > 0 && got[i-1].Name > h.Name {
			t.Errorf("not sorted: %s before %s", got[i-1].Name, h.Name)
		}
		if h.Ready != want[h.Name] {
			t.Errorf("%s: Ready %v, want %v (%s)", h.Name, h.Ready, want[h.Name], h.Reason)
		}
	}
	if got[3].Name != "gone" || got[3].Boot != "not verified (server not asked)" {
		t.Errorf("unregistered node: %+v", got[3])
	}
	one, err := ObserveOne(context.Background(), cs, "c", boots, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	if one.Ready || !strings.Contains(one.Reason, "rebooted") {
		t.Errorf("ObserveOne(c): %+v, want not Ready (rebooted)", one)
	}
	missing, err := ObserveOne(context.Background(), cs, "gone", nil, nil)
	if err != nil || missing.Registered || missing.Ready {
		t.Errorf("ObserveOne(gone): %+v, %v", missing, err)
	}
}
