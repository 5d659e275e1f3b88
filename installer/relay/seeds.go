package relay

import (
	"context"
	"errors"
	"sync"
)

// ErrSeedFailed means the seed did not get the file; a waiter gets it from
// the engine directly.
var ErrSeedFailed = errors.New("the seed did not receive the file")

// Seeds elects, per center and digest, the server that receives a file
// from the engine (the seed); the others of its center wait until the seed
// has it, then fetch from it. Safe for concurrent use; the zero value is
// ready. H identifies a server (package phase uses *phase.Host).
//
// A seed never waits on another server, so claims cannot deadlock
// whatever the order in which servers ask for files.
type Seeds[H comparable] struct {
	mu sync.Mutex
	m  map[seedKey]*seed[H]
}

type seedKey struct{ center, sum string }

type seed[H comparable] struct {
	host H
	done chan struct{}
	ok   bool
}

// Claim answers h's need for sum in center. mine is true when h must get
// the file from the engine itself: no server of the center has it yet (h
// becomes the seed), or h is the seed and needs it again (its cache lost
// it). The caller then reports the outcome with Settle. Otherwise Claim
// waits for the seed's upload and returns the seed (possibly h itself,
// when another call of h's seeded it meanwhile); ErrSeedFailed when that
// upload failed (the caller uploads directly; a later Claim elects a new
// seed).
func (s *Seeds[H]) Claim(ctx context.Context, center, sum string, h H) (src H, mine bool, err error) {
	k := seedKey{center, sum}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[seedKey]*seed[H]{}
	}
	e := s.m[k]
	if e == nil || (e.host == h && isDone(e.done)) {
		e = &seed[H]{host: h, done: make(chan struct{})}
		s.m[k] = e
		s.mu.Unlock()
		return h, true, nil
	}
	s.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		var zero H
		return zero, false, ctx.Err()
	}
	if !e.ok {
		var zero H
		return zero, false, ErrSeedFailed
	}
	return e.host, false, nil
}

// Settle records the outcome of h's upload of sum as seed of center:
// waiters fetch from h when ok, and fall back to direct uploads when not.
func (s *Seeds[H]) Settle(center, sum string, h H, ok bool) {
	k := seedKey{center, sum}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	if e == nil || e.host != h || isDone(e.done) {
		return
	}
	e.ok = ok
	if !ok {
		delete(s.m, k)
	}
	close(e.done)
}

// Drop forgets src as the seed of sum in center, e.g. when a receiver
// could not fetch from it: the next Claim elects a new seed.
func (s *Seeds[H]) Drop(center, sum string, src H) {
	k := seedKey{center, sum}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[k]; e != nil && e.host == src && isDone(e.done) {
		delete(s.m, k)
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
