// Command tricenter installs and operates three-center Kubernetes clusters
// on bare metal: validate and plan an inventory, drive BMCs, install hosts
// over SSH, and check BGP and etcd.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// First Ctrl-C cancels gracefully; the second one exits at once,
	// unless a command claimed it (the drill's restore): then the third.
	// SIGHUP (the operator's SSH session dropped) and SIGTERM count as
	// Ctrl-C: a drill restores its center before it exits.
	ctx, second := withSecondInterrupt(context.Background())
	ctx, stop := cliflags.Interrupts{Stderr: os.Stderr, HandOver: second.handOver}.Notify(ctx)
	defer stop()

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
			return cliflags.ExitInterrupted
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	if ctx.Err() != nil {
		return cliflags.ExitInterrupted
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
