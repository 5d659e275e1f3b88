package addons

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Node labels set through the API.
const (
	LabelRegion = "topology.kubernetes.io/region"
	LabelZone   = zoneKey
	LabelRack   = "tricenter.io/rack"
	LabelSerial = "tricenter.io/serial"
	LabelModel  = "tricenter.io/model"
	// LabelControlPlane marks control-plane servers (kubelets may not set
	// node-role labels themselves).
	LabelControlPlane = controlPlane
)

// TaintControlPlane keeps pods off servers that are control plane only.
var TaintControlPlane = corev1.Taint{Key: controlPlane, Effect: corev1.TaintEffectNoSchedule}

// LabelValue turns free text (a FRU serial or model) into a valid label
// value: characters other than letters, digits, '-', '_' and '.' become
// '_', leading and trailing non-alphanumerics are dropped, and the result
// is cut to 63 characters. It returns "" when nothing is left.
func LabelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	trimEnds := func(b []byte) []byte {
		for len(b) > 0 && !alnum(b[0]) {
			b = b[1:]
		}
		for len(b) > 0 && !alnum(b[len(b)-1]) {
			b = b[:len(b)-1]
		}
		return b
	}
	b = trimEnds(b)
	if len(b) > validation.LabelValueMaxLength {
		b = trimEnds(b[:validation.LabelValueMaxLength])
	}
	return string(b)
}

// DesiredLabels are the labels tricenter wants on h's Node: region,
// zone, rack, the inventory's labels, the control-plane role, and the FRU
// serial and model when known. A nil value means "remove" (the
// control-plane role of a server that lost it).
func DesiredLabels(h inventory.Host, fru *FRU) map[string]*string {
	want := map[string]*string{}
	set := func(k, v string) { want[k] = &v }
	for k, v := range h.Labels {
		set(k, v)
	}
	if h.Site != nil {
		set(LabelRegion, h.Site.Name)
	}
	if h.Center != nil {
		set(LabelZone, h.Center.Name)
	}
	if h.Rack != nil {
		set(LabelRack, h.Rack.Name)
	}
	if h.HasRole(inventory.RoleControlPlane) {
		set(LabelControlPlane, "")
	} else {
		want[LabelControlPlane] = nil
	}
	if fru != nil {
		if v := LabelValue(fru.Serial); v != "" {
			set(LabelSerial, v)
		}
		if v := LabelValue(fru.Model); v != "" {
			set(LabelModel, v)
		}
	}
	return want
}

// nodeLabels labels and taints the selected servers' Nodes. The labels
// are applied server-side on every apply, as field manager tricenter with
// conflicts forced: the apply configuration holds only the labels
// tricenter sets, so a label changed or removed out of band is put back and
// every other field of the Node (the kubelet's labels, its status) stays
// its owner's. A label tricenter wants gone (the control-plane role of a
// server that lost it) is removed when present.
func (a *applier) nodeLabels(ctx context.Context, o *Options) error {
	hosts, err := o.Cluster.Select(o.Select)
	if err != nil {
		return err
	}
	var deadline time.Time
	if o.WaitForNodes > 0 {
		deadline = time.Now().Add(o.WaitForNodes)
	}
	for _, h := range hosts {
		n, err := a.waitNode(ctx, h.Name, deadline)
		if apierrors.IsNotFound(err) {
			a.log.Warn("Node not registered yet: labels wait for the next apply", "node", h.Name)
			continue
		}
		if err != nil {
			return err
		}
		var fru *FRU
		if f, ok := o.FRU[h.Name]; ok {
			fru = &f
		}
		if err := a.labelNode(ctx, n, DesiredLabels(h, fru)); err != nil {
			return err
		}
		if err := a.taint(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// labelNode applies the labels of want (nil values: labels to remove) to
// the registered Node n and records the keys it changed.
func (a *applier) labelNode(ctx context.Context, n *corev1.Node, want map[string]*string) error {
	nodes := a.cs.CoreV1().Nodes()
	set := map[string]string{}
	var remove []string
	for k, v := range want {
		if v != nil {
			set[k] = *v
		} else {
			remove = append(remove, k)
		}
	}
	got, err := nodes.Apply(ctx, corev1ac.Node(n.Name).WithLabels(set), applyOptions)
	if err != nil {
		return fmt.Errorf("applying the labels of Node %s: %w", n.Name, err)
	}
	var keys []string
	if got.ResourceVersion != n.ResourceVersion {
		for k, v := range set {
			if have, ok := n.Labels[k]; !ok || have != v {
				keys = append(keys, k)
			}
		}
	}
	// A label tricenter shared with another manager (or one set by hand)
	// outlives its leaving the apply configuration: removed here.
	patch := map[string]any{}
	for _, k := range remove {
		_, had := n.Labels[k]
		if _, ok := got.Labels[k]; ok {
			patch[k] = nil
			keys = append(keys, k)
		} else if had {
			keys = append(keys, k) // the apply removed it
		}
	}
	if len(patch) > 0 {
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": patch}})
		if err != nil {
			return err
		}
		if _, err := nodes.Patch(ctx, n.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("removing labels from Node %s: %w", n.Name, err)
		}
	}
	if len(keys) > 0 {
		sort.Strings(keys)
		a.record("labelled Node %s (%s)", n.Name, strings.Join(keys, ", "))
	}
	return nil
}

// waitNode reads a Node, polling until deadline (zero: once) while it is
// not registered.
func (a *applier) waitNode(ctx context.Context, name string, deadline time.Time) (*corev1.Node, error) {
	wait := 250 * time.Millisecond
	for {
		n, err := a.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return n, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Node %s: %w", name, err)
		}
		if deadline.IsZero() || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// taint keeps the control-plane taint on control-plane-only servers and
// off the others (kubelets add it at registration; roles can change later).
func (a *applier) taint(ctx context.Context, h inventory.Host) error {
	want := h.HasRole(inventory.RoleControlPlane) && !h.HasRole(inventory.RoleWorker)
	nodes := a.cs.CoreV1().Nodes()
	changed := ""
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, h.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		has := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&TaintControlPlane) })
		switch {
		case want && !has:
			n.Spec.Taints = append(n.Spec.Taints, TaintControlPlane)
			changed = "tainted"
		case !want && has:
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&TaintControlPlane) })
			changed = "untainted"
		default:
			return nil
		}
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting the control-plane taint on Node %s: %w", h.Name, err)
	}
	if changed != "" {
		a.record("%s Node %s (%s:%s)", changed, h.Name, TaintControlPlane.Key, TaintControlPlane.Effect)
	}
	return nil
}
