package pki

import (
	"net"
	"strings"
	"testing"
	"time"
)

// renewStore is a memory store with a Kubernetes CA and three leaves
// issued at start, its clock at *now.
func renewStore(t *testing.T, now *time.Time) (*Store, *KeyPair, map[string]Request) {
	t.Helper()
	s := NewMemStore()
	s.Now = func() time.Time { return *now }
	ca, err := s.CA(KubernetesCA, "kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	reqs := map[string]Request{
		APIServerServing:         {CommonName: "kube-apiserver", DNSNames: []string{"kubernetes"}, IPs: []net.IP{net.IPv4(198, 18, 0, 1)}, Usage: Server},
		KubeletServingFile("w1"): {CommonName: "system:node:w1", IPs: []net.IP{net.IPv4(198, 18, 1, 1)}, Usage: Server},
		KubeletServingFile("w2"): {CommonName: "system:node:w2", IPs: []net.IP{net.IPv4(198, 18, 1, 2)}, Usage: Server},
		KubeletClientFile("w1"):  {CommonName: "system:node:w1", Organization: []string{"system:nodes"}, Usage: Client},
	}
	for f, r := range reqs {
		if _, changed, err := s.Leaf(ca, KubernetesCA, f, r); err != nil || !changed {
			t.Fatalf("issuing %s: changed %v, %v", f, changed, err)
		}
	}
	return s, ca, reqs
}

// leafRun asks for every leaf again and returns the ones reissued.
func leafRun(t *testing.T, s *Store, ca *KeyPair, reqs map[string]Request) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for f, r := range reqs {
		_, changed, err := s.Leaf(ca, KubernetesCA, f, r)
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			out[f] = true
		}
	}
	return out
}

// TestRenewalForcesListedLeavesOnce: a recorded renewal makes Leaf reissue
// the listed leaves issued before its start, and only those; a second run
// (a resumed renewal, a plain apply) reissues nothing; once finished the
// record forces nothing.
func TestRenewalForcesListedLeavesOnce(t *testing.T) {
	start := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	now := start
	s, ca, reqs := renewStore(t, &now)

	// Without a renewal: far from expiry, nothing is reissued.
	now = start.Add(time.Minute)
	if got := leafRun(t, s, ca, reqs); len(got) != 0 {
		t.Fatalf("without a renewal reissued %v", got)
	}
	now = start.Add(2 * time.Minute)
	listed := []string{LeafID(KubernetesCA, APIServerServing), LeafID(KubernetesCA, KubeletServingFile("w1"))}
	r, err := s.BeginRenewal(listed, now)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Started.Equal(now) || len(r.Leaves) != 2 {
		t.Fatalf("renewal %+v", r)
	}
	now = start.Add(3 * time.Minute)
	got := leafRun(t, s, ca, reqs)
	if len(got) != 2 || !got[APIServerServing] || !got[KubeletServingFile("w1")] {
		t.Fatalf("reissued %v, want %s and %s only", got, APIServerServing, KubeletServingFile("w1"))
	}
	kp, err := s.Load(KubernetesCA, APIServerServing)
	if err != nil {
		t.Fatal(err)
	}
	if IssuedBefore(kp.Cert, r.Started) || !IssuedAt(kp.Cert).Equal(now) {
		t.Fatalf("reissued certificate issued at %s, renewal started %s", IssuedAt(kp.Cert), r.Started)
	}
	// A re-run while the record is unfinished: nothing left to renew.
	now = start.Add(4 * time.Minute)
	if got := leafRun(t, s, ca, reqs); len(got) != 0 {
		t.Fatalf("second run reissued %v", got)
	}
	// Resumed with more leaves: the start is kept, the new leaf is old.
	r2, err := s.BeginRenewal([]string{LeafID(KubernetesCA, KubeletServingFile("w2"))}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Started.Equal(r.Started) || len(r2.Leaves) != 3 {
		t.Fatalf("resumed renewal %+v, want the start %s and 3 leaves", r2, r.Started)
	}
	if got := leafRun(t, s, ca, reqs); len(got) != 1 || !got[KubeletServingFile("w2")] {
		t.Fatalf("resumed run reissued %v, want %s only", got, KubeletServingFile("w2"))
	}
	if err := s.FinishRenewal(now); err != nil {
		t.Fatal(err)
	}
	fin, err := s.Renewal()
	if err != nil || fin == nil || fin.Finished.IsZero() {
		t.Fatalf("finished renewal %+v, %v", fin, err)
	}
	// After the renewal finished, even a day later nothing changes.
	now = start.Add(24 * time.Hour)
	if got := leafRun(t, s, ca, reqs); len(got) != 0 {
		t.Fatalf("after the renewal reissued %v", got)
	}
	// A new renewal after a finished one starts afresh.
	r3, err := s.BeginRenewal([]string{LeafID(KubernetesCA, KubeletClientFile("w1"))}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !r3.Started.Equal(now) || len(r3.Leaves) != 1 || !r3.Finished.IsZero() {
		t.Fatalf("new renewal %+v", r3)
	}
}

// TestBeginRenewalRefusesAuthorities: CAs and the service-account key are
// never part of a renewal, and the record is not written.
func TestBeginRenewalRefusesAuthorities(t *testing.T) {
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	s, _, _ := renewStore(t, &now)
	for _, id := range []string{"kubernetes/ca", "kubernetes/" + ServiceAccountKey, "apiserver", "a/b/c"} {
		if _, err := s.BeginRenewal([]string{id}, now); err == nil {
			t.Errorf("%s: accepted", id)
		}
	}
	if r, err := s.Renewal(); err != nil || r != nil {
		t.Fatalf("a refused renewal was recorded: %+v, %v", r, err)
	}
}

// TestRenewalCorruptRecord: an unreadable record is an error from Leaf
// naming the file, not a silent renewal or none.
func TestRenewalCorruptRecord(t *testing.T) {
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	s, ca, reqs := renewStore(t, &now)
	if err := s.files().WriteFile(RenewalFile, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Leaf(ca, KubernetesCA, APIServerServing, reqs[APIServerServing])
	if err == nil || !strings.Contains(err.Error(), RenewalFile) {
		t.Fatalf("corrupt record: %v, want an error naming %s", err, RenewalFile)
	}
}

// TestIssuedBeforeAtTheSecond: certificates carry whole seconds; one
// issued within the second the renewal started counts as renewed.
func TestIssuedBeforeAtTheSecond(t *testing.T) {
	start := time.Date(2026, 6, 1, 9, 0, 0, 400_000_000, time.UTC)
	ca, err := NewMemStore().CA(KubernetesCA, "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{start.Add(-2 * time.Second), true},
		{start.Add(-300 * time.Millisecond), false},
		{start.Add(time.Second), false},
	} {
		kp, err := Issue(ca, Request{CommonName: "x", Usage: Client}, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if got := IssuedBefore(kp.Cert, start); got != tc.want {
			t.Errorf("issued at %s: IssuedBefore(%s) = %v, want %v", tc.at, start, got, tc.want)
		}
	}
}

// TestStoreLeaves: the leaves are listed with their kind and server;
// authorities are not.
func TestStoreLeaves(t *testing.T) {
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	s, _, _ := renewStore(t, &now)
	s.RenewBefore = 400 * 24 * time.Hour // every leaf is due
	ls, err := s.Leaves(func(_, name string) bool { return name != KubeletServingFile("w2") })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]StoredLeaf{}
	for _, l := range ls {
		got[l.ID()] = l
	}
	if len(got) != 3 {
		t.Fatalf("leaves %v, want 3 (no CA, not the unused one)", got)
	}
	w1 := got[LeafID(KubernetesCA, KubeletServingFile("w1"))]
	if w1.Kind != KindKubeletServing || w1.Server != "w1" || !w1.RenewDue || w1.Cert == nil || !w1.IssuedAt.Equal(now) {
		t.Fatalf("kubelet serving w1: %+v", w1)
	}
	if a := got[LeafID(KubernetesCA, APIServerServing)]; a.Kind != KindAPIServerServing || a.Server != "" {
		t.Fatalf("apiserver: %+v", a)
	}
	for _, tc := range []struct{ authority, name, want string }{
		{EtcdCA, "server-m1", "m1"}, {EtcdPeerCA, "peer-m2", "m2"}, {KubernetesCA, "kubelet-client-w3", "w3"},
		{KubernetesCA, APIServerServing, ""}, {EtcdCA, AdminClient, ""},
	} {
		if got := LeafServer(tc.authority, tc.name); got != tc.want {
			t.Errorf("LeafServer(%s, %s) = %q, want %q", tc.authority, tc.name, got, tc.want)
		}
	}
}
