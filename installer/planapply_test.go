package installer

import (
	"slices"
	"testing"
)

// What an apply may rely on from its plan: the components the plan did
// not find pending, never the gates; the CA check of such an apply covers
// only the components it walks again.
func TestPlanReuse(t *testing.T) {
	all := []Component{Etcd, BGP, ControlPlane, Nodes, Addons, Gates}
	for _, c := range []struct {
		pending, want []Component
	}{
		{pending: []Component{Addons}, want: []Component{Etcd, BGP, ControlPlane, Nodes}},
		{pending: []Component{Nodes, Addons}, want: []Component{Etcd, BGP, ControlPlane}},
		{pending: []Component{Etcd, BGP, ControlPlane, Nodes, Addons}, want: nil},
	} {
		r := &Result{DryRun: true, Components: all, Pending: c.pending}
		if got := r.reusable(); !slices.Equal(got, c.want) {
			t.Errorf("pending %v: reusable %v, want %v", c.pending, got, c.want)
		}
	}
	if got := caComponents(all, nil); !slices.Equal(got, all) {
		t.Errorf("without reuse the CA check covers %v, want every component", got)
	}
	if got := caComponents(all, []Component{Etcd, BGP, ControlPlane}); !slices.Equal(got, []Component{Nodes}) {
		t.Errorf("reusing etcd, bgp, control-plane: the CA check covers %v, want nodes", got)
	}
	if got := caComponents(all, []Component{Etcd, BGP, ControlPlane, Nodes}); len(got) != 0 {
		t.Errorf("reusing every host component: the CA check covers %v, want none", got)
	}
}
