package sshtest

import (
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"
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

// WatchNoPartial polls path every millisecond until the returned function
// is called, and fails the test if the path ever holds a file of another
// size than want: a reader must never see a partial upload.
func WatchNoPartial(t testing.TB, path string, want int64) (stop func()) {
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for !done.Load() {
			if st, err := os.Stat(path); err == nil && st.Size() != want {
				t.Errorf("%s seen with %d bytes, want %d (partial file)", path, st.Size(), want)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() { done.Store(true); <-finished }
}
