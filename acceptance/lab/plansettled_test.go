//go:build labacc

package lab

import "testing"

func TestStaleHeartbeatsOnly(t *testing.T) {
	stale := map[string]any{"problems": []any{"Node dc1-r01-w01 is not Ready: kubelet heartbeat 34s old (fresh within 20s)"}}
	other := map[string]any{"problems": []any{"Node dc1-r01-w01 is not Ready: kubelet heartbeat 34s old (fresh within 20s)", "boot id differs"}}
	for _, tc := range []struct {
		addr   string
		before any
		want   bool
	}{
		{`tricenter_node.worker["dc1-r01-w01"]`, stale, true},
		{`tricenter_node.worker["dc1-r01-w01"]`, other, false},
		{`tricenter_node.worker["dc1-r01-w01"]`, map[string]any{"problems": []any{}}, false},
		{`tricenter_cluster.lab`, stale, false},
		{`tricenter_node.worker["dc1-r01-w01"]`, nil, false},
	} {
		if got := staleHeartbeatsOnly(tc.addr, tc.before); got != tc.want {
			t.Errorf("%s %v: %v, want %v", tc.addr, tc.before, got, tc.want)
		}
	}
}
