package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LockKey is where the run holding the cluster's lock says who it is,
// under a lease that ends with it.
const LockKey = "/tricenter/lock"

// ErrLocked is wrapped when another run holds the cluster's lock past the
// wait.
var ErrLocked = errors.New("another run holds the cluster's lock")

// lockPoll is how often a waiting run looks at the lock again.
const lockPoll = time.Second

// Lease is a held cluster lock: the key under a lease kept alive until
// Release. Lost is closed when the lease can no longer be renewed (etcd
// lost its quorum for longer than the TTL, or the key was taken away).
type Lease struct {
	c      *Client
	id     clientv3.LeaseID
	stop   context.CancelFunc
	lost   chan struct{}
	Waited time.Duration
}

// Lost is closed when the lock is no longer held.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Lock takes the cluster's lock (LockKey) for a run described by value
// (shown to other runs), under a lease of ttl renewed while the run lasts.
// While another run holds it, Lock waits up to wait, telling waiting once
// with the holder's description, then fails with ErrLocked naming it. A
// holder that died stops renewing: its lease, and the lock, end within
// ttl.
func (c *Client) Lock(ctx context.Context, value string, ttl, wait time.Duration, waiting func(holder string)) (*Lease, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs < 2 {
		secs = 2
	}
	start := time.Now()
	told := false
	for {
		l, holder, err := c.tryLock(ctx, value, secs)
		if err != nil {
			return nil, err
		}
		if l != nil {
			l.Waited = time.Since(start)
			return l, nil
		}
		if time.Since(start) >= wait {
			return nil, fmt.Errorf("%w: %s (waited %v; a holder that died releases it within %ds)",
				ErrLocked, holder, time.Since(start).Round(time.Second), secs)
		}
		if !told && waiting != nil {
			waiting(holder)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(lockPoll, wait-time.Since(start)+time.Millisecond)):
		}
	}
}

// tryLock takes the lock once, or returns who holds it.
func (c *Client) tryLock(ctx context.Context, value string, secs int64) (*Lease, string, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	g, err := c.cli.Grant(rctx, secs)
	if err != nil {
		return nil, "", fmt.Errorf("granting a lease for the cluster lock: %w", err)
	}
	txn, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(LockKey), "=", 0)).
		Then(clientv3.OpPut(LockKey, value, clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(LockKey)).
		Commit()
	if err != nil {
		_, _ = c.cli.Revoke(context.WithoutCancel(rctx), g.ID)
		return nil, "", fmt.Errorf("taking the cluster lock: %w", err)
	}
	if !txn.Succeeded {
		_, _ = c.cli.Revoke(rctx, g.ID)
		holder := "a run that did not say who it is"
		if rs := txn.Responses; len(rs) > 0 && len(rs[0].GetResponseRange().Kvs) > 0 {
			holder = string(rs[0].GetResponseRange().Kvs[0].Value)
		}
		return nil, holder, nil
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := c.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		stop()
		_, _ = c.cli.Revoke(context.WithoutCancel(rctx), g.ID)
		return nil, "", fmt.Errorf("keeping the cluster lock alive: %w", err)
	}
	l := &Lease{c: c, id: g.ID, stop: stop, lost: make(chan struct{})}
	go func() {
		defer close(l.lost)
		for range ch {
		}
	}()
	return l, "", nil
}

// Release gives the lock up: the lease is revoked, which deletes the key.
// A lease that cannot be revoked (etcd down) ends within its TTL.
func (l *Lease) Release(ctx context.Context) error {
	l.stop()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := l.c.cli.Revoke(rctx, l.id); err != nil {
		return fmt.Errorf("releasing the cluster lock (it ends with its lease): %w", err)
	}
	return nil
}
