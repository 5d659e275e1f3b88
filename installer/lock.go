package installer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
)

// Defaults of LockOptions.
const (
	// DefaultLockTimeout is how long a run waits for another run's lock.
	DefaultLockTimeout = 30 * time.Second
	// DefaultLockTTL is the cluster lease's time to live: a killed
	// holder's lock ends within it.
	DefaultLockTTL = 15 * time.Second
	// lockProbe bounds finding out whether etcd answers at all.
	lockProbe = 5 * time.Second
)

// Holder says who runs: it is written beside the state directory's lock
// and into the cluster's lease, so a refused run can name it.
type Holder struct {
	// Tool is the program: tricenter, or terraform-provider-tricenter.
	Tool string
	// Command is what it runs ("apply", "terraform apply").
	Command string
	PID     int
	Host    string
	User    string
	Started time.Time
	// ID tells this process's runs from another's with the same pid.
	ID string
}

// NewHolder describes this process.
func NewHolder(tool, command string) Holder {
	h := Holder{Tool: tool, Command: command, PID: os.Getpid(), Started: time.Now()}
	h.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	h.ID = hex.EncodeToString(b)
	return h
}

func (h Holder) String() string {
	return fmt.Sprintf("%s %s (pid %d on %s, user %s, since %s)", h.Tool, h.Command, h.PID, h.Host, h.User,
		h.Started.Local().Format(time.RFC3339))
}

// StoreLocker is a Store whose runs can be serialised on this machine (the
// CLI's state directory). The provider's store is Terraform's state, which
// Terraform's own state lock serialises.
type StoreLocker interface {
	Lock(ctx context.Context, holder string, wait time.Duration, waiting func(holder string)) (unlock func(), err error)
}

// LockOptions configure Engine.Lock.
type LockOptions struct {
	// Holder names the run (default Config.Holder).
	Holder Holder
	// Timeout is how long to wait for another run's lock
	// (Config.LockTimeout, else DefaultLockTimeout; negative: do not
	// wait).
	Timeout time.Duration
	// TTL is the cluster lease's (DefaultLockTTL).
	TTL time.Duration
}

// RunLock is what one run holds: the state directory's lock (where the
// store has one) and the cluster's lease in etcd (whenever etcd answers).
type RunLock struct {
	// InForce says which locks are held, and why not the others.
	InForce string
	// Waited is how long the run waited for another's lock.
	Waited time.Duration
	// Lost is closed when the cluster lease is lost while the run goes on
	// (nil without a lease).
	Lost    <-chan struct{}
	release []func()
}

// Release gives every lock up, the cluster's first.
func (l *RunLock) Release() {
	if l == nil {
		return
	}
	for i := len(l.release) - 1; i >= 0; i-- {
		l.release[i]()
	}
	l.release = nil
}

// ErrLocked is wrapped when another run holds a lock this run needs.
var ErrLocked = errors.New("locked")

// Lock takes the locks a mutating run needs so that one writer changes the
// cluster at a time: the state directory's (Store implements StoreLocker),
// then the cluster's lease in its own etcd (LockKey), which every tool
// honours wherever it runs. When etcd does not answer — a first install, a
// restore after quorum loss, etcd itself being rebuilt — only the state
// directory's lock is in force, and InForce says so. A second run waits up
// to o.Timeout, then fails naming the holder.
func (e *Engine) Lock(ctx context.Context, o LockOptions) (*RunLock, error) {
	if o.Timeout == 0 {
		o.Timeout = e.cfg.LockTimeout
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultLockTimeout
	}
	if o.Timeout < 0 {
		o.Timeout = 0
	}
	if o.TTL <= 0 {
		o.TTL = DefaultLockTTL
	}
	if o.Holder.Tool == "" {
		o.Holder = e.cfg.Holder
	}
	if o.Holder.Tool == "" {
		o.Holder = NewHolder("tricenter", "run")
	}
	l := &RunLock{}
	var parts []string
	start := time.Now()
	waiting := func(holder string) {
		e.log.Warn("Waiting for another run's lock", "holder", holder, "limit", o.Timeout)
		e.cfg.Progress.Host("lock", "waiting for "+holder)
	}
	if sl, ok := e.cfg.Store.(StoreLocker); ok && !e.cfg.SkipStoreLock {
		unlock, err := sl.Lock(ctx, o.Holder.String(), o.Timeout, waiting)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLocked, err)
		}
		l.release = append(l.release, unlock)
		parts = append(parts, "state directory")
	}
	remaining := o.Timeout - time.Since(start)
	lease, why, err := e.clusterLease(ctx, o, max(remaining, 0), waiting)
	if err != nil {
		l.Release()
		return nil, err
	}
	if lease != nil {
		l.release = append(l.release, lease.release)
		l.Lost = lease.lost
		parts = append(parts, fmt.Sprintf("cluster lease in etcd (%s, TTL %v)", etcd.LockKey, o.TTL))
	} else {
		parts = append(parts, "no cluster lease: "+why)
	}
	l.Waited = time.Since(start)
	l.InForce = strings.Join(parts, "; ")
	e.log.Info("Holding the run's locks", "locks", l.InForce, "holder", o.Holder.String(), "waited", l.Waited.Round(time.Millisecond))
	return l, nil
}

// heldLease is a cluster lease shared by this process's runs (Terraform
// runs several resources of one cluster at once in one provider process).
type heldLease struct {
	refs    int
	lease   *etcd.Lease
	cli     *etcd.Client
	lost    chan struct{}
	release func()
}

// Leases shares cluster leases between the runs of one process. The
// provider keeps one for its life; a CLI command needs none.
type Leases struct {
	mu   sync.Mutex
	held map[string]*heldLease
}

// clusterLease takes (or, with Config.Leases, shares) the cluster's lease.
// A nil lease with a reason means etcd did not answer.
func (e *Engine) clusterLease(ctx context.Context, o LockOptions, wait time.Duration, waiting func(string)) (*heldLease, string, error) {
	key := e.cfg.Cluster.Metadata.Name
	share := e.cfg.Leases
	if share != nil {
		share.mu.Lock()
		defer share.mu.Unlock()
		if h := share.held[key]; h != nil {
			select {
			case <-h.lost:
			default:
				h.refs++
				return h, "", nil
			}
		}
	}
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, "no etcd PKI in this state yet (a first install)", nil
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		return nil, "etcd client: " + err.Error(), nil
	}
	// A lease needs a quorum: a lone member answers its member list but
	// grants nothing, so the probe is a linearizable read.
	pctx, cancel := context.WithTimeout(ctx, lockProbe)
	ep := cli.QuorumAnswers(pctx, cli.Endpoints())
	cancel()
	if ep == "" {
		_ = cli.Close()
		return nil, "etcd does not answer with a quorum: a first install, a restore after quorum loss, or etcd being rebuilt", nil
	}
	lease, err := cli.Lock(ctx, o.Holder.String(), o.TTL, wait, waiting)
	if err != nil {
		_ = cli.Close()
		return nil, "", fmt.Errorf("%w: %w", ErrLocked, err)
	}
	h := &heldLease{refs: 1, lease: lease, cli: cli, lost: make(chan struct{})}
	go func() {
		<-lease.Lost()
		close(h.lost)
	}()
	drop := func() {
		if err := lease.Release(context.Background()); err != nil {
			// After a reset of etcd there is nothing to release it in.
			e.log.Info("Cluster lease not released: it ends within its TTL", "err", err)
		}
		_ = cli.Close()
	}
	h.release = drop
	if share != nil {
		if share.held == nil {
			share.held = map[string]*heldLease{}
		}
		share.held[key] = h
		h.release = func() {
			// The last of the process's runs gives the lease up at once:
			// a provider process killed at the end of terraform's run
			// would otherwise keep it for its TTL.
			share.mu.Lock()
			defer share.mu.Unlock()
			h.refs--
			if h.refs > 0 {
				return
			}
			if share.held[key] == h {
				delete(share.held, key)
			}
			drop()
		}
	}
	return h, "", nil
}

// lockRun takes a mutating run's locks and returns a context that ends if
// the cluster lease is lost mid-run (another run could then take it: this
// one stops rather than interleave).
func (e *Engine) lockRun(ctx context.Context, o Options, res *Result) (context.Context, func(), error) {
	l, err := e.Lock(ctx, LockOptions{Timeout: o.LockTimeout})
	if err != nil {
		return ctx, nil, err
	}
	res.Lock = l.InForce
	ctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	if l.Lost != nil {
		go func() {
			select {
			case <-l.Lost:
				e.log.Error("Cluster lease lost mid-run: stopping", "holder", e.cfg.Holder.String())
				cancel(errLeaseLost)
			case <-stop:
			}
		}()
	}
	return ctx, func() {
		close(stop)
		l.Release()
		cancel(nil)
	}, nil
}

// errLeaseLost ends a run whose cluster lease could not be renewed.
var errLeaseLost = errors.New("the cluster lease was lost (etcd unreachable for longer than its TTL): run again")
