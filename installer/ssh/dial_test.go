package ssh_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// slowProxy forwards TCP from on to target, holding every new connection
// for delay before the first byte passes, and counts the connections.
func slowProxy(t *testing.T, on netip.Addr, target string, delay time.Duration) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(on.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				select {
				case <-time.After(delay):
				case <-t.Context().Done():
					return
				}
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(c, u); c.Close() }()
				_, _ = io.Copy(u, c)
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// TestSharedDialSurvivesCancelledCaller: the first caller's context is
// cancelled while the dial it started is still under way (the proxy holds
// the connection); a second caller that joined that dial with a live
// context gets the connection, and it is one connection.
func TestSharedDialSurvivesCancelledCaller(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t)
	h := l.Hosts[0]
	const delay = 1500 * time.Millisecond
	addr, conns := slowProxy(t, l.Gateway, net.JoinHostPort(h.Addr.String(), "22"), delay)
	host, port, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(port)
	ep := ssh.Endpoint{Name: h.Name, Address: host, Port: pn, KeyFile: l.ClientKey, HostKey: h.Fingerprint}
	p := newPool(t, ssh.Options{})

	first, cancelFirst := context.WithCancel(ctx)
	firstErr := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.Client(first, ep)
		firstErr <- err
	}()
	// The second caller joins once the first one's dial reached the proxy.
	deadline := time.Now().Add(delay / 2)
	for conns.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first caller's dial did not reach the proxy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := make(chan error, 1)
	var c2 *ssh.Client
	go func() {
		var err error
		c2, err = p.Client(ctx, ep)
		second <- err
	}()
	time.Sleep(150 * time.Millisecond) // let the second caller join the dial (it cannot be observed from outside)
	cancelFirst()
	select {
	case err := <-firstErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller: %v, want context.Canceled", err)
		}
		if el := time.Since(start); el >= delay {
			t.Errorf("the cancelled caller returned after %s, not at once", el)
		}
	case <-time.After(delay):
		t.Fatal("the cancelled caller still waits for the dial")
	}
	if err := <-second; err != nil {
		t.Fatalf("the second caller inherited the first one's cancellation: %v", err)
	}
	out, err := c2.Output(ctx, "echo ok")
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("the shared connection: %q, %v", out, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want one shared dial", n)
	}
	c3, err := p.Client(ctx, ep)
	if err != nil || c3 != c2 {
		t.Errorf("a later caller got %p, %v; want the cached connection %p", c3, err, c2)
	}

	t.Run("a dial every caller gave up on stops", func(t *testing.T) {
		p := newPool(t, ssh.Options{})
		before := conns.Load()
		cctx, cancel := context.WithTimeout(ctx, delay/4)
		defer cancel()
		if _, err := p.Client(cctx, ep); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the caller's deadline", err)
		}
		// A new caller starts a fresh dial rather than joining the
		// abandoned one, and succeeds.
		c, err := p.Client(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Output(ctx, "true"); err != nil {
			t.Fatal(err)
		}
		if n := conns.Load() - before; n != 2 {
			t.Errorf("%d connections, want 2 (the abandoned dial and a fresh one)", n)
		}
	})
}
