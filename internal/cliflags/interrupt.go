package cliflags

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ExitInterrupted is the exit status of a process stopped by Ctrl-C
// (128 + SIGINT, as shells report it).
const ExitInterrupted = 130

// Interrupts is a command-line process's handling of Ctrl-C: the first
// SIGINT (or SIGTERM, or SIGHUP: the operator's SSH session dropped)
// cancels the command's context so that it stops after its running steps;
// the next one exits at once.
type Interrupts struct {
	// Stderr gets the line saying what the process does about it.
	Stderr io.Writer
	// HandOver, when set, is called on the second interrupt: when it
	// reports true (a command claimed the second interrupt to finish
	// something, as the drill restoring a center), the process waits for
	// a third before it exits.
	HandOver func() bool
	// Exit ends the process (os.Exit when nil).
	Exit func(code int)
}

// Notify returns parent's child context cancelled on the first interrupt
// and stop, which releases the signals (the process then dies of them
// again).
func (i Interrupts) Notify(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sig := make(chan os.Signal, 3)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go i.watch(sig, cancel, done)
	return ctx, func() {
		signal.Stop(sig)
		close(done)
		cancel()
	}
}

// watch handles the interrupts that arrive on sig until done is closed.
func (i Interrupts) watch(sig <-chan os.Signal, cancel context.CancelFunc, done <-chan struct{}) {
	next := func() (os.Signal, bool) {
		select {
		case s := <-sig:
			return s, true
		case <-done:
			return nil, false
		}
	}
	s, ok := next()
	if !ok {
		return
	}
	// Once interrupted, a write to a stdout or stderr whose reader is gone
	// (the dropped session) returns an error instead of killing the
	// process in the middle of its graceful stop.
	signal.Ignore(syscall.SIGPIPE)
	why := "Interrupted"
	if s == syscall.SIGHUP {
		why = "Interrupted (hangup: the terminal or session closed)"
	}
	fmt.Fprintf(i.Stderr, "\n%s: stopping after the running steps (Ctrl-C again to exit now)\n", why)
	cancel()
	if _, ok := next(); !ok {
		return
	}
	if i.HandOver != nil && i.HandOver() {
		if _, ok := next(); !ok {
			return
		}
	}
	exit := i.Exit
	if exit == nil {
		exit = os.Exit
	}
	exit(ExitInterrupted)
}
