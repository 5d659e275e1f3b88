package installer

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestSSHCheckAndExecThroughBastion: the servers' network is not routable
// from the test process and the inventory has no jump hosts; only
// Config.Bastion (the CLI's --bastion, pinned with --bastion-host-key)
// reaches them. SSHCheck and Exec go through it against real sshd.
func TestSSHCheckAndExecThroughBastion(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	c := l.Cluster(sshtest.ClusterOptions{PinHostKeys: true})
	for i := range c.Spec.Centers {
		c.Spec.Centers[i].JumpHost = nil
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Store: st, Source: "sshlab.yaml", Bastion: "root@" + l.Jump.Addr.String(),
		BastionKeyFile: l.ClientKey, BastionHostKey: l.Jump.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.Hosts[0].RequireUnreachable(t)

	rows, err := e.SSHCheck(ctx, inventory.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(l.Hosts) {
		t.Fatalf("%d rows for %d hosts", len(rows), len(l.Hosts))
	}
	for i, r := range rows {
		h := l.Hosts[i]
		if r.Host != h.Name || !r.OK() || r.Via != "bastion" || r.HostKey != h.Fingerprint || r.Sudo != "root" ||
			r.Address != h.Addr.String()+":22" || r.CPUs < 1 || r.Kernel == "" {
			t.Errorf("row %d: %+v, want %s reached through the bastion with key %s", i, r, h.Name, h.Fingerprint)
		}
	}

	// Exec: output per server, exit codes per server, a dry run runs
	// nothing.
	var mu sync.Mutex
	outs := map[string]*bytes.Buffer{}
	output := func(server string) (io.Writer, io.Writer, func()) {
		mu.Lock()
		defer mu.Unlock()
		b := &bytes.Buffer{}
		outs[server] = b
		return b, b, func() {}
	}
	first := l.Hosts[0]
	res, err := e.Exec(ctx, ExecOptions{Command: `hostname -I | tr -d ' '; [ "$(hostname -I | tr -d ' ')" = ` + first.Addr.String() + ` ] && exit 3; true`,
		Output: output})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	for i, r := range res {
		h := l.Hosts[i]
		want := 0
		if i == 0 {
			want = 3
		}
		if r.Server != h.Name || r.Exit != want || r.Err != nil || r.DryRun || strings.TrimSpace(outs[h.Name].String()) != h.Addr.String() {
			t.Errorf("exec on %s: %+v, output %q; want exit %d and its address", h.Name, r, outs[h.Name], want)
		}
	}
	res, err = e.Exec(ctx, ExecOptions{Select: inventory.Selector{Servers: []string{first.Name}}, Command: "touch /tmp/dry-run-ran", DryRun: true})
	if err != nil || len(res) != 1 || !res[0].DryRun {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	res, err = e.Exec(ctx, ExecOptions{Select: inventory.Selector{Servers: []string{first.Name}}, Command: "test ! -e /tmp/dry-run-ran"})
	if err != nil || res[0].Exit != 0 {
		t.Errorf("the dry run ran its command: %+v, %v", res, err)
	}
	if _, err := e.Exec(ctx, ExecOptions{Select: inventory.Selector{Racks: []string{"dc9-r01"}}, Command: "true"}); err == nil {
		t.Error("a selection that matches nothing: no error")
	}
}
