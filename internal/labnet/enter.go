package labnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNamespace runs f on an OS thread of its own that has entered the
// network namespace at nsPath (a /run/netns file), then returns the thread
// to its namespace. Sockets and devices f creates belong to that namespace
// and keep working from any thread afterwards. A thread that cannot go
// back stays locked and the runtime discards it.
func InNamespace(nsPath string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err, back := enter(nsPath, f)
		if back {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// enter runs f in nsPath on the calling (locked) thread; back says whether
// the thread is in its own namespace again.
func enter(nsPath string, f func() error) (err error, back bool) {
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return err, true
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering %s: %w", nsPath, err), true
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("returning from %s to the original namespace: %w", nsPath, err)), false
	}
	return ferr, true
}

// Path is the namespace's file under /run/netns.
func (n *NS) Path() string { return filepath.Join("/run/netns", n.Name) }

// Do runs f inside the namespace (InNamespace).
func (n *NS) Do(f func() error) error { return InNamespace(n.Path(), f) }

// Listen opens a listener inside the namespace (a health endpoint on a
// node's 127.0.0.1, say); it keeps working after Listen returns.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// DialContext opens a connection from inside the namespace, as a program
// running there would: its packets leave by the namespace's routes. It
// fits http.Transport.DialContext.
func (n *NS) DialContext(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
