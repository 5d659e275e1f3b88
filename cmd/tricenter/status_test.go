package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestPrintStatusCertificates: the certificates section shows per kind the
// earliest expiry, the time left and RENEW DUE / EXPIRED, the served
// certificate's comparison, and the warnings; JSON carries the same.
func TestPrintStatusCertificates(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st := &installer.Status{Cluster: "lab",
		Certificates: &installer.CertificateStatus{Source: installer.CertificateSourceStore, RenewBefore: 5 * time.Minute, Kinds: []pki.KindExpiry{
			{Kind: pki.KindAdmin, File: "st/pki/kubernetes/admin.crt", Count: 1, NotAfter: at.Add(-time.Minute), Left: -time.Minute, Expired: true},
			{Kind: pki.KindKubeletServing, File: "st/pki/kubernetes/kubelet-serving-w1.crt", Count: 3, NotAfter: at.Add(4 * time.Minute), Left: 4 * time.Minute, RenewDue: true},
			{Kind: "CA etcd", CA: true, File: "st/pki/etcd/ca.crt", Count: 1, NotAfter: at.Add(3650 * 24 * time.Hour), Left: 3650 * 24 * time.Hour},
			{Kind: pki.KindServiceAccountKey, NoExpiry: true, File: "st/pki/kubernetes/sa.key", Count: 1},
		}, Unused: []string{"st/pki/kubernetes/kubelet-client-gone.crt"}, Served: []installer.ServedCertificate{
			{Name: "cp1", Address: "198.18.0.11:6443", Observed: true, NotAfter: at.Add(10 * time.Minute), Left: 10 * time.Minute, MatchesStore: true},
			{Name: "cp2", Address: "198.18.0.12:6443", Observed: true, NotAfter: at.Add(2 * time.Minute), Left: 2 * time.Minute},
			{Name: "API VIP", Address: "198.18.0.100:6443", Error: "not asked: its /readyz did not answer"},
		}},
		Warnings: []string{"certificates: kubelet serving (...) expires ..."},
	}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"certificates (source: store; renew before 5m):",
		"admin client                   1     2026-02-28T23:59:00Z expired      EXPIRED   st/pki/kubernetes/admin.crt",
		"kubelet serving                3     2026-03-01T00:04:00Z 4m           RENEW DUE st/pki/kubernetes/kubelet-serving-w1.crt",
		"CA etcd                        1     2036-02-27T00:00:00Z 3650d",
		"service-account key            1     no expiry",
		"cp1              198.18.0.11:6443       expires 2026-03-01T00:10:00Z (10m left), the state's",
		"cp2              198.18.0.12:6443       expires 2026-03-01T00:02:00Z (2m left), DIFFERS from the state's",
		"API VIP          198.18.0.100:6443      not observed (not asked: its /readyz did not answer)",
		"warnings:\n  - certificates: kubelet serving",
		"not used by the inventory any more (not judged): st/pki/kubernetes/kubelet-client-gone.crt",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	j, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"certificates":{"source":"store","renewBefore":300000000000,"kinds":[`, `"renewDue":true`, `"expired":true`, `"noExpiry":true`, `"matchesStore":false`, `"warnings":[`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON lacks %s: %s", want, j)
		}
	}
}

// TestPrintStatusLoadBalancers: the LoadBalancer section shows the
// controller, and per Service its address (or why it has none), ready
// endpoints and announcing nodes per center.
func TestPrintStatusLoadBalancers(t *testing.T) {
	st := &installer.Status{Cluster: "lab", LoadBalancers: &installer.LoadBalancerStatus{
		Controller: installer.LoadBalancerController{Replicas: 2, Available: 2, Leader: "tricenter-lb-7d9f-abcde"},
		Services: []installer.LoadBalancerService{
			{Service: "shop/web", Addresses: []string{"198.19.120.1"}, Policy: "Local", Prefer: "production",
				Ready: map[string]int{"dc1": 2, "dc3": 1}, Announcing: map[string][]string{"dc1": {"dc1-r01-w01", "dc1-r02-w01"}, "dc3": {"dc3-r01-w01"}}},
			{Service: "shop/api", Policy: "Cluster", Prefer: "none", Ready: map[string]int{}, Announcing: map[string][]string{},
				Pending: "no address for shop/api: the load-balancer pool has no free address"},
		}}}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"LoadBalancer Services (controller 2/2 Ready now, leader tricenter-lb-7d9f-abcde):",
		"shop/web                     198.19.120.1     Local    production dc1:2 dc3:1            dc1:dc1-r01-w01,dc1-r02-w01 dc3:dc3-r01-w01",
		"shop/api                     <pending>        Cluster  none       -                      -",
		"pending: no address for shop/api: the load-balancer pool has no free address",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	j, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"loadBalancers":{"controller":{"replicas":2,"available":2,"leader":"tricenter-lb-7d9f-abcde"}`, `"readyEndpoints":{"dc1":2,"dc3":1}`, `"announcing":{"dc1":["dc1-r01-w01","dc1-r02-w01"]`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON lacks %s: %s", want, j)
		}
	}
}

// The snapshot section: per center the newest snapshot, its age, where it
// came from and whether a restore was rehearsed; a store not read says so.
func TestPrintStatusSnapshots(t *testing.T) {
	taken := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	newest := &installer.StoredSnapshot{Meta: backup.Meta{ID: "lab-20261207T080000Z-dc1-r01-s01", TakenAt: taken, Member: "dc1-r01-s01",
		MemberCenter: "dc1", Revision: 702}, Check: "ok"}
	st := &installer.Status{Cluster: "lab", Snapshots: []installer.SnapshotCenterStatus{
		{Center: "dc3", Server: "dc3-r01-s01", Newest: newest, Age: 41 * time.Second, Count: 3,
			Restored: "not verified (no restore rehearsed: tricenter snapshot verify)"},
		{Center: "dc1", Server: "dc1-r01-s01", Error: "dial tcp 198.19.1.10:22: connect: no route to host"},
		{Center: "dc2", Server: "dc2-r01-s01"},
	}}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"etcd snapshots (newest per center, sealed file checked now):",
		"dc3      dc3-r01-s01      41s       702        dc1-r01-s01 (dc1)      3      not verified (no restore rehearsed: tricenter snapshot verify)",
		"dc1      dc1-r01-s01      not verified (dial tcp 198.19.1.10:22: connect: no route to host)",
		"dc2      dc2-r01-s01      none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// The etcd line names the leader and its center; a leader outside
// production, while production is healthy, is pointed out.
func TestPrintStatusEtcdLeader(t *testing.T) {
	h := &etcd.ClusterHealth{Leader: 5, Members: []etcd.Member{{ID: 1, Name: "dc1-r01-s01"}, {ID: 5, Name: "dc3-r01-s01"}},
		PerCenter: map[string]int{"dc1": 2, "dc2": 2, "dc3": 1}}
	for _, tc := range []struct {
		name      string
		leader    etcd.LeaderPlacement
		want, not string
	}{
		{name: "home", leader: etcd.LeaderPlacement{Leader: "dc1-r01-s01", LeaderCenter: "dc1", LeaderRole: inventory.RoleProduction, Home: true},
			want: "etcd: leader dc1-r01-s01 (dc1), members per center map[dc1:2 dc2:2 dc3:1]\nAPI:", not: "moves it home"},
		{name: "remote-dr", leader: etcd.LeaderPlacement{Leader: "dc3-r01-s01", LeaderCenter: "dc3", LeaderRole: inventory.RoleRemoteDR,
			Target: "dc1-r01-s01", TargetCenter: "dc1"},
			want: "etcd: leader dc3-r01-s01 (dc3), members per center map[dc1:2 dc2:2 dc3:1]\n" +
				"  leader in dc3 (remote-dr): writes from production pay the WAN round trip; the next apply moves it home\n"},
		{name: "local-dr", leader: etcd.LeaderPlacement{Leader: "dc2-r01-s01", LeaderCenter: "dc2", LeaderRole: inventory.RoleLocalDR,
			Target: "dc1-r01-s01", TargetCenter: "dc1"},
			want: "  leader in dc2 (local-dr): writes from production pay the round trip to dc2; the next apply moves it home\n"},
		{name: "production down", leader: etcd.LeaderPlacement{Leader: "dc2-r01-s01", LeaderCenter: "dc2", LeaderRole: inventory.RoleLocalDR,
			Reason: "the production center has no healthy voting member"},
			want: "  leader in dc2 (local-dr), and it stays there: the production center has no healthy voting member\n", not: "moves it home"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &installer.Status{Cluster: "lab", Etcd: h, EtcdLeader: &tc.leader}
			var b bytes.Buffer
			printStatus(&b, st)
			out := b.String()
			if !strings.Contains(out, tc.want) || (tc.not != "" && strings.Contains(out, tc.not)) {
				t.Errorf("want %q (and not %q) in:\n%s", tc.want, tc.not, out)
			}
			j, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(j), `"etcdLeader":{"leader":"`+tc.leader.Leader+`","leaderCenter":"`+tc.leader.LeaderCenter+`"`) {
				t.Errorf("JSON lacks the leader placement: %s", j)
			}
		})
	}
}

func TestPrintStatusLost(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, &installer.Status{Cluster: "lab", Lost: []string{"dc1", "dc2"}, LostServers: []string{"dc1-r01-s01", "dc2-r01-s01"}})
	if want := "lost centers dc1, dc2: servers dc1-r01-s01, dc2-r01-s01 not checked (the inventory marks them lost)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("missing %q in:\n%s", want, b.String())
	}
}
