// Command tricenter installs and operates three-center Kubernetes clusters
// on bare metal: validate and plan an inventory, drive BMCs, install hosts
// over SSH, and check BGP and etcd.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// First Ctrl-C cancels gracefully; the second one exits at once,
	// unless a command claimed it (the drill's restore): then the third.
	// SIGHUP (the operator's SSH session dropped) and SIGTERM count as
	// Ctrl-C: a drill restores its center before it exits.
	ctx, second := withSecondInterrupt(ctx)
	sig := make(chan os.Signal, 3)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		// Once interrupted, a write to a stdout or stderr whose reader is
		// gone (the dropped session) returns an error instead of killing
		// the process in the middle of its graceful stop.
		signal.Ignore(syscall.SIGPIPE)
		why := "Interrupted"
		if s == syscall.SIGHUP {
			why = "Interrupted (hangup: the terminal or session closed)"
		}
		fmt.Fprintf(os.Stderr, "\n%s: stopping after the running steps (Ctrl-C again to exit now)\n", why)
		cancel()
		<-sig
		if second.handOver() {
			<-sig
		}
		os.Exit(130)
	}()

	root := newRootCmd(os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "Error:", ee.err)
		}
		if ctx.Err() != nil {
			return 130
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	if ctx.Err() != nil {
		return 130
	}
	return 1
}

// exitError carries an exit code; a nil err means the command already
// printed its findings.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }
