package etcd

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The etcd peer CA rotation of a cluster whose peers share the etcd CA
// (the split) against real etcd: three members started from a store
// written before the split, then, for each phase of the rotation (trust,
// reissue, finish), the files and settings of the phase (PKIFiles,
// RenderEnv) and the members restarted one at a time, as apply restarts
// them; the cluster is healthy and takes a write after every restart. At
// the end the peer side checks the peer CA and its common name as on a
// new cluster: the etcd CA's certificates no longer open a peer
// connection.
func TestPeerCASplitRotationAgainstEtcd(t *testing.T) {
	bin := etcdTestBinary(t)
	mp, members := startTestCluster(t, bin, "198.19.247", func(s *pki.Store, ms []inventory.Member) { writeSharedEtcdStore(t, s, ms) })
	if !mp.pki.SharedPeerCA {
		t.Fatal("the store written before the split does not share its CA")
	}
	s := &pki.Store{Dir: filepath.Join(mp.dir, "pki")}
	var pm []pki.EtcdMember
	var initial []InitialMember
	for _, m := range members {
		pm = append(pm, pki.EtcdMember{Name: m.Name, Address: m.Address})
		initial = append(initial, InitialMember{m.Name, PeerURL(m.Address)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rot, err := s.StartRotation(pki.EtcdPeerCA)
	if err != nil {
		t.Fatal(err)
	}
	if !rot.Split {
		t.Fatal("the rotation of a shared store is not the split")
	}
	writes := 0
	for i, phase := range pki.RotationPhases() {
		if i > 0 {
			if got, err := s.AdvanceRotation(pki.EtcdPeerCA); err != nil || got != phase {
				t.Fatalf("advancing to %s: %v %v", phase, got, err)
			}
		}
		certs, err := s.EnsureEtcd(pm)
		if err != nil {
			t.Fatal(err)
		}
		mp.pki = certs
		mp.set.SharedPeerCA, mp.set.SplittingPeerCA = certs.SharedPeerCA, certs.SplittingPeerCA
		env := string(RenderEnv(mp.set, members[0]))
		if wantCN := phase == pki.RotationFinish; strings.Contains(env, "ETCD_PEER_CERT_ALLOWED_CN") != wantCN || !strings.Contains(env, "ETCD_PEER_TRUSTED_CA_FILE="+PeerCAFile) {
			t.Fatalf("%s: settings:\n%s", phase, env)
		}
		for _, m := range members {
			mp.stop(m.Name)
			if err := mp.start(m, initial, true); err != nil {
				t.Fatal(err)
			}
			if _, err := mp.cli.WaitHealthy(ctx, members, 45*time.Second); err != nil {
				t.Fatalf("%s: after restarting %s the cluster is not healthy: %v", phase, m.Name, err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := mp.cli.KV().Put(wctx, "rotation-"+fmt.Sprint(writes), string(phase)+"/"+m.Name)
			wcancel()
			if err != nil {
				t.Fatalf("%s: a write after restarting %s: %v", phase, m.Name, err)
			}
			writes++
		}
		t.Logf("phase %s: three members restarted one at a time, a write after each", phase)
	}
	if got, err := s.AdvanceRotation(pki.EtcdPeerCA); err != nil || got != pki.RotationNone {
		t.Fatalf("completing: %v %v", got, err)
	}
	done, err := s.EnsureEtcd(pm)
	if err != nil {
		t.Fatal(err)
	}
	if done.SharedPeerCA || done.SplittingPeerCA || len(done.Changed) != 0 {
		t.Fatalf("after the split: shared %v, splitting %v, issued %v", done.SharedPeerCA, done.SplittingPeerCA, done.Changed)
	}
	for _, m := range members {
		files, err := PKIFiles(done, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f.Path == PeerCAFile && string(f.Data) != string(mp.pki.PeerCA.CertPEM) {
				t.Errorf("%s: the peer CA file after the split differs from the finish phase's", m.Name)
			}
		}
	}
	m1, m2 := members[0], members[1]
	from := mp.ns[m1.Name]
	peerURL := PeerURL(m2.Address) + "/version"
	accepted(t, ctx, from, "m1's peer certificate of the new peer CA on m2's peer port", peerURL, done.Peer[m1.Name], done.PeerCA.Cert)
	refusedTLS(t, ctx, from, "tricenter's client certificate (etcd CA) on m2's peer port after the split", peerURL, done.Admin, done.PeerCA.Cert)
	got, err := mp.cli.KV().Get(ctx, "rotation-0")
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("reading the first write back: %v %v", got, err)
	}
}
