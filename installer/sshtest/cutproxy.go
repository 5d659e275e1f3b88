package sshtest

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
)

// CutProxy forwards TCP from a port on address on to target. The first
// connection is cut after limit bytes from client to server, as a network
// failure in the middle of an upload would; later connections pass
// untouched. It returns the proxy's host:port and stops with the test.
func CutProxy(t testing.TB, on netip.Addr, target string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(on.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := n.Add(1) == 1
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(c, u); c.Close() }()
				if first {
					_, _ = io.CopyN(u, c, limit)
					return
				}
				_, _ = io.Copy(u, c)
			}()
		}
	}()
	return ln.Addr().String()
}
