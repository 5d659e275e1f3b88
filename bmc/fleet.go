package bmc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Pool keeps one Client, and so one RMCP+ session, per BMC, and runs fleet
// operations with bounded concurrency. It is safe for concurrent use; Close
// it when done.
type Pool struct {
	opts Options
	// sem bounds the BMCs talked to at once across every Run of the pool
	// (Terraform runs resources concurrently in one process).
	sem chan struct{}

	mu      sync.Mutex
	clients map[string]*Client
}

// NewPool returns an empty pool; opts apply to every client.
func NewPool(opts Options) *Pool {
	opts = opts.withDefaults()
	return &Pool{opts: opts, sem: make(chan struct{}, opts.Concurrency), clients: map[string]*Client{}}
}

// Options are the pool's options, defaults applied.
func (p *Pool) Options() Options { return p.opts }

// Client returns the pooled client for t, creating it if needed. A target
// whose user, password or cipher suites changed gets a fresh client.
func (p *Pool) Client(t Target) (*Client, error) {
	key := t.Server + "|" + t.Addr()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		if sameCredentials(c.t, t) {
			return c, nil
		}
		go func() { _ = c.Close(context.Background()) }()
	}
	c, err := NewClient(t, p.opts)
	if err != nil {
		return nil, err
	}
	p.clients[key] = c
	return c, nil
}

func sameCredentials(a, b Target) bool {
	if a.User != b.User || a.Password != b.Password || len(a.CipherSuites) != len(b.CipherSuites) {
		return false
	}
	for i := range a.CipherSuites {
		if a.CipherSuites[i] != b.CipherSuites[i] {
			return false
		}
	}
	return true
}

// Close closes every session.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	cs := p.clients
	p.clients = map[string]*Client{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Operation is a fleet operation.
type Operation string

// Fleet operations.
const (
	OpStatus    Operation = "status"
	OpOn        Operation = "on"
	OpOff       Operation = "off"
	OpSoftOff   Operation = "soft-off"
	OpCycle     Operation = "cycle"
	OpReset     Operation = "reset"
	OpPXE       Operation = "pxe"
	OpDisk      Operation = "disk"
	OpInventory Operation = "inventory"
)

// Request is one fleet operation with its parameters.
type Request struct {
	Op Operation
	// UEFI and Persistent apply to OpPXE and OpDisk.
	UEFI       bool
	Persistent bool
	// Wait, if positive, waits up to this long after a power action for
	// the resulting state (off for off and soft-off, on otherwise).
	Wait time.Duration
}

// Result is the outcome of an operation on one server.
type Result struct {
	Server      string       `json:"server"`
	BMC         string       `json:"bmc,omitempty"`
	CipherSuite int          `json:"cipherSuite,omitempty"`
	Power       PowerState   `json:"power,omitempty"`
	Change      *PowerChange `json:"change,omitempty"`
	// BootRequested is the boot override sent (pxe, disk); Boot is what
	// the BMC reports afterwards (some BMCs, ipmi_sim among them, do not
	// report the UEFI bit back).
	BootRequested *BootOptions `json:"bootRequested,omitempty"`
	Boot          *BootStatus  `json:"boot,omitempty"`
	Inventory     *Inventory   `json:"inventory,omitempty"`
	DurationMs    int64        `json:"durationMs"`
	// Err is the failure, wrapped with the server name; Error is its text
	// for JSON.
	Err   error  `json:"-"`
	Error string `json:"error,omitempty"`
}

// RunHosts runs req on the BMCs of the inventory hosts. A host whose BMC
// entry is unusable gets a failed result; the others run.
func (p *Pool) RunHosts(ctx context.Context, hosts []inventory.Host, req Request) []Result {
	targets := make([]*Target, len(hosts))
	out := make([]Result, len(hosts))
	for i, h := range hosts {
		t, err := TargetFromHost(h)
		if err != nil {
			out[i] = Result{Server: h.Name, Err: err, Error: err.Error()}
			continue
		}
		targets[i] = &t
	}
	p.run(ctx, targets, req, out)
	return out
}

// Run runs req on every target and returns one result per target in the
// same order. At most Options.Concurrency BMCs are busy at once, counting
// every Run in progress on the pool.
func (p *Pool) Run(ctx context.Context, targets []Target, req Request) []Result {
	ts := make([]*Target, len(targets))
	for i := range targets {
		ts[i] = &targets[i]
	}
	out := make([]Result, len(targets))
	p.run(ctx, ts, req, out)
	return out
}

func (p *Pool) run(ctx context.Context, targets []*Target, req Request, out []Result) {
	var wg sync.WaitGroup
	for i, t := range targets {
		if t == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case p.sem <- struct{}{}:
			case <-ctx.Done():
				err := fmt.Errorf("%s on %s: not started: %w", req.Op, t, ctx.Err())
				out[i] = Result{Server: t.Server, BMC: t.Addr(), Err: err, Error: err.Error()}
				return
			}
			defer func() { <-p.sem }()
			out[i] = p.runOne(ctx, *t, req)
		}()
	}
	wg.Wait()
}

func (p *Pool) runOne(ctx context.Context, t Target, req Request) Result {
	start := time.Now()
	r := Result{Server: t.Server, BMC: t.Addr()}
	err := p.apply(ctx, t, req, &r)
	r.DurationMs = time.Since(start).Milliseconds()
	if err != nil {
		r.Err, r.Error = err, err.Error()
	}
	return r
}

func (p *Pool) apply(ctx context.Context, t Target, req Request, r *Result) error {
	c, err := p.Client(t)
	if err != nil {
		return err
	}
	defer func() { r.CipherSuite = c.CipherSuite() }()
	switch req.Op {
	case OpStatus:
		r.Power, err = c.PowerState(ctx)
		return err
	case OpOn, OpOff, OpSoftOff, OpCycle, OpReset:
		ch, err := c.SetPower(ctx, PowerAction(req.Op))
		if err != nil {
			return err
		}
		r.Change = &ch
		want := PowerOn
		if req.Op == OpOff || req.Op == OpSoftOff {
			want = PowerOff
		}
		if !ch.Changed() {
			r.Power = ch.Before
			return nil
		}
		if req.Wait > 0 {
			if err := c.WaitPower(ctx, want, req.Wait); err != nil {
				return err
			}
			r.Power = want
		}
		return nil
	case OpPXE, OpDisk:
		dev := BootPXE
		if req.Op == OpDisk {
			dev = BootDisk
		}
		o := BootOptions{Device: dev, UEFI: req.UEFI, Persistent: req.Persistent}
		r.BootRequested = &o
		st, err := c.SetBootDevice(ctx, o)
		if err != nil {
			return err
		}
		r.Boot = &st
		return nil
	case OpInventory:
		inv, err := c.Inventory(ctx)
		if err != nil {
			return err
		}
		r.Inventory = &inv
		return nil
	}
	return fmt.Errorf("%s: unknown operation %q: use status, on, off, soft-off, cycle, reset, pxe, disk or inventory: %w", t.Server, req.Op, ErrConfig)
}

// Errors joins the per-server errors of results (nil when all succeeded).
// Each keeps its type for errors.Is and errors.As.
func Errors(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// FactsByServer collects the hardware facts of the servers whose inventory was
// read (OpInventory), by server name: what the bootstrap turns into node
// labels (Facts.Labels).
func FactsByServer(results []Result) map[string]Facts {
	out := map[string]Facts{}
	for _, r := range results {
		if r.Err == nil && r.Inventory != nil && r.Inventory.Facts != (Facts{}) {
			out[r.Server] = r.Inventory.Facts
		}
	}
	return out
}
