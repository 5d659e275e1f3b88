package main

import (
	"context"
	"sync"
)

// secondInterrupt lets a command that must finish something before it
// exits (the drill restoring a center it powered off) take the second
// Ctrl-C instead of the process exiting at once: main hands it over, and
// a third Ctrl-C exits.
type secondInterrupt struct {
	mu      sync.Mutex
	claimed bool
	ch      chan struct{}
}

type secondInterruptKey struct{}

// withSecondInterrupt is called by main once.
func withSecondInterrupt(ctx context.Context) (context.Context, *secondInterrupt) {
	s := &secondInterrupt{ch: make(chan struct{})}
	return context.WithValue(ctx, secondInterruptKey{}, s), s
}

// handOver closes the channel of a command that claimed the second
// Ctrl-C and reports whether one did.
func (s *secondInterrupt) handOver() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.claimed {
		return false
	}
	select {
	case <-s.ch:
	default:
		close(s.ch)
	}
	return true
}

// claimSecondInterrupt returns a channel closed on the second Ctrl-C, or
// nil when main set none up (tests pass their own).
func claimSecondInterrupt(ctx context.Context) <-chan struct{} {
	s, _ := ctx.Value(secondInterruptKey{}).(*secondInterrupt)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimed = true
	return s.ch
}
