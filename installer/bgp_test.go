package installer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// InstallBGPAgents and BGPStatus against real sshd servers behind a jump
// host. The servers have no systemd and no agent: the install is a dry
// run, limited to the selected servers, and the status fails the gate
// naming every selected server.
func TestBGPAgentsInstallDryRunAndStatusOverSSH(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	c := l.Cluster(sshtest.ClusterOptions{PinHostKeys: true})
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "tricenter-bgp")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Store: st, AgentBinary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	two := []string{l.Hosts[0].Name, l.Hosts[2].Name}
	res, err := e.InstallBGPAgents(ctx, BGPAgentOptions{Select: inventory.Selector{Servers: two}, DryRun: true})
	if err != nil {
		t.Fatalf("install dry run: %v", err)
	}
	if got := phase.HostNames(res.Changes); !slices.Equal(got, two) {
		t.Errorf("changes on %v, want only the selected %v", got, two)
	}
	for _, h := range two {
		all := strings.Join(res.Changes[h], "\n")
		for _, want := range []string{"would upload " + bgpagent.BinaryPath, "would write " + bgpagent.UnitPath, "would restart " + bgpagent.UnitName} {
			if !strings.Contains(all, want) {
				t.Errorf("%s: changes lack %q:\n%s", h, want, all)
			}
		}
	}

	rep, err := e.BGPStatus(ctx, BGPStatusOptions{Select: inventory.Selector{Servers: two}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Nodes) != 2 {
		t.Fatalf("gate without agents: ok=%v over %d nodes, want failed over 2", rep.OK, len(rep.Nodes))
	}
	for i, n := range rep.Nodes {
		if n.Node != two[i] || n.OK || !strings.Contains(strings.Join(n.Problems, "; "), "no status:") {
			t.Errorf("node %+v, want %s failing with no status", n, two[i])
		}
	}
	if _, err := e.BGPStatus(ctx, BGPStatusOptions{Select: inventory.Selector{Servers: []string{"nope"}}}); err == nil {
		t.Error("an unknown server: no error")
	}
}

// The etcd operations need the PKI an apply created.
func TestEtcdOperationsNeedThePKI(t *testing.T) {
	e, _ := drillEngine(t, false)
	if _, err := e.EtcdStatus(context.Background()); !errors.Is(err, ErrNoPKI) {
		t.Errorf("EtcdStatus without PKI: %v, want ErrNoPKI", err)
	}
	if _, err := e.EtcdSnapshot(context.Background(), t.TempDir()); !errors.Is(err, ErrNoPKI) {
		t.Errorf("EtcdSnapshot without PKI: %v, want ErrNoPKI", err)
	}
}
