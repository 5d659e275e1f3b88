package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// singleEtcd starts the pinned etcd as one member on a free loopback port
// with mutual TLS, and returns a Client factory for it.
func singleEtcd(t *testing.T) func() *Client {
	t.Helper()
	bin, err := filepath.Abs("../../.cache/artifacts/" + artifacts.DefaultName("etcd"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.RequireFile(t, "the pinned etcd: run make artifacts", bin)
	dir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	p, err := store.EnsureEtcd([]pki.EtcdMember{{Name: "m1", Address: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string]*pki.KeyPair{"server": p.Server["m1"], "ca": p.CA} {
		if err := kp.Save(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
			t.Fatal(err)
		}
	}
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	client := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	var log bytes.Buffer
	cmd := exec.Command(bin, "--name", "m1", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "m1="+peer,
		"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--trusted-ca-file", filepath.Join(dir, "ca.crt"), "--client-cert-auth", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	tc, err := TLSConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *Client {
		c, err := NewClient([]string{client}, tc, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := newClient()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Members(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not answer: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return newClient
}

// TestClusterLockAgainstEtcd: one holder at a time; a second run waits,
// then fails naming the holder; after a release it takes the lock; a
// holder that dies (stops renewing, never releases) loses it within its
// TTL.
func TestClusterLockAgainstEtcd(t *testing.T) {
	newClient := singleEtcd(t)
	ctx := context.Background()
	a, b := newClient(), newClient()

	la, err := a.Lock(ctx, "tricenter apply (pid 1 on jump-1)", 3*time.Second, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var told string
	start := time.Now()
	_, err = b.Lock(ctx, "terraform apply (pid 2 on ws-2)", 3*time.Second, 1500*time.Millisecond, func(h string) { told = h })
	waited := time.Since(start)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "tricenter apply (pid 1 on jump-1)") {
		t.Fatalf("second run: %v, want ErrLocked naming the holder", err)
	}
	if told != "tricenter apply (pid 1 on jump-1)" {
		t.Errorf("the waiting run was told %q", told)
	}
	if waited < 1500*time.Millisecond || waited > 4*time.Second {
		t.Errorf("the second run gave up after %v, want about its 1.5 s wait", waited)
	}
	// Held past its TTL: the keepalive renews it.
	time.Sleep(4 * time.Second)
	if _, err := b.Lock(ctx, "terraform apply", 3*time.Second, 0, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("after its TTL a live holder's lock was taken: %v", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
	case <-time.After(5 * time.Second):
		t.Error("Lost not closed after Release")
	}
	lb, err := b.Lock(ctx, "terraform apply", 3*time.Second, time.Second, nil)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	// The holder dies: its client goes away without revoking.
	b.Close()
	c := newClient()
	lc, err := c.Lock(ctx, "tricenter apply (after a kill)", 3*time.Second, 15*time.Second, nil)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	t.Logf("a dead holder's lock was taken after %v (TTL 3s)", lc.Waited.Round(time.Millisecond))
	if lc.Waited < time.Second || lc.Waited > 8*time.Second {
		t.Errorf("took a dead holder's lock after %v, want within about its 3 s TTL", lc.Waited)
	}
	_ = lb
	if err := lc.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
