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
	ctx, second := withSecondInterrupt(ctx)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "\nInterrupted: stopping after the running steps (Ctrl-C again to exit now)")
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
