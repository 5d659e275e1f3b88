package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// apiHoldSettle is how long after a release the next server's hold waits:
// the BGP agent announces the released server's VIP again after its
// health check passes (every second, once by default).
const apiHoldSettle = 3 * time.Second

// apiHolds is the progress reporter of an apply that may restart the API
// (Engine.run): before the apply restarts kube-apiserver (or the etcd
// member a stacked kube-apiserver uses) on a control-plane server, it
// holds the API VIP
// away from that server (bgpagent.Hold, once another server answers
// /readyz); the hold is released once the server's /readyz answers again,
// before the next server's hold and at the end of the phase. Every
// mutation is reported before it is made (phase.Host.Mutate), so the
// hold is in place before the restart.
type apiHolds struct {
	progress.Reporter
	e   *Engine
	ctx context.Context
	m   *phase.Manager
	cp  map[string]inventory.Member
	// stacked are the control-plane servers that are etcd members too.
	stacked map[string]bool
	on      bool

	mu   sync.Mutex
	held []string // held now
	all  []string // every server held, in order
	errs []error
	// warnings are restarts made without a hold (none possible).
	warnings []string
}

func (e *Engine) newAPIHolds(ctx context.Context) *apiHolds {
	h := &apiHolds{Reporter: e.cfg.Progress, e: e, ctx: ctx, m: e.Manager(false),
		cp: map[string]inventory.Member{}, stacked: map[string]bool{}}
	members := map[string]bool{}
	for _, m := range e.Placement().Etcd.Members {
		members[m.Name] = true
	}
	for _, m := range e.Placement().ControlPlane {
		h.cp[m.Name] = m
		h.stacked[m.Name] = members[m.Name]
	}
	h.on = e.IPs().APIVIP.IsValid() && len(h.cp) > 1
	return h
}

// Host holds the VIP before an API restart, then reports the line.
func (h *apiHolds) Host(host, msg string) {
	if h.on && h.restartsAPI(host, msg) {
		h.hold(host)
	}
	h.Reporter.Host(host, msg)
}

// PhaseDone releases the phase's holds (the phase waited for its last
// restart's health).
func (h *apiHolds) PhaseDone(title string, err error, took time.Duration) {
	h.release()
	h.Reporter.PhaseDone(title, err, took)
}

func (h *apiHolds) restartsAPI(host, msg string) bool {
	if _, ok := h.cp[host]; !ok {
		return false
	}
	switch msg {
	case "restart " + controlplane.UnitName(controlplane.APIServer):
		return true
	case "restart " + etcd.Unit:
		return h.stacked[host]
	}
	return false
}

func (h *apiHolds) hold(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if slices.Contains(h.held, name) {
		return
	}
	if h.releaseLocked() > 0 {
		time.Sleep(apiHoldSettle)
	}
	err := h.holdLocked(name)
	if err != nil {
		// Best effort: the restart goes ahead (it is rolling and waits
		// for the server's health either way); the run says it was not
		// held.
		h.e.log.Warn("Restarting without holding the API VIP away from the server", "host", name, "error", err)
		h.warnings = append(h.warnings, fmt.Sprintf("%s restarted without the API VIP held away from it: %v", name, err))
	}
}

func (h *apiHolds) holdLocked(name string) error {
	if err := h.othersReady(name); err != nil {
		return err
	}
	hs, err := h.m.Hosts(inventory.Selector{Servers: []string{name}})
	if err != nil {
		return err
	}
	h.e.log.Info("Holding the API VIP away from the server while it restarts", "host", name)
	if err := bgpagent.Hold(h.ctx, hs[0], bgpagent.APIServerService, "tricenter restarts kube-apiserver"); err != nil {
		return err
	}
	h.held = append(h.held, name)
	h.all = append(h.all, name)
	return nil
}

// othersReady checks that another control-plane server answers /readyz.
func (h *apiHolds) othersReady(name string) error {
	var why []string
	for n, m := range h.cp {
		if n == name || slices.Contains(h.held, n) {
			continue
		}
		_, err := h.e.readyz(h.ctx, apiURL(m.Address))
		if err == nil {
			return nil
		}
		why = append(why, n+": "+err.Error())
	}
	sort.Strings(why)
	return fmt.Errorf("no other control-plane server answers /readyz (%s)", strings.Join(why, "; "))
}

func (h *apiHolds) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseLocked()
}

// releaseLocked releases every held server once its /readyz answers
// (waiting up to the engine's HealthTimeout) and says how many; one that
// does not answer stays held, with an error.
func (h *apiHolds) releaseLocked() (released int) {
	var kept []string
	for _, name := range h.held {
		if err := h.releaseOne(name); err != nil {
			h.errs = append(h.errs, err)
			kept = append(kept, name)
			continue
		}
		released++
	}
	h.held = kept
	return released
}

func (h *apiHolds) releaseOne(name string) error {
	url := apiURL(h.cp[name].Address)
	deadline := time.Now().Add(h.e.cfg.HealthTimeout)
	for {
		_, err := h.e.readyz(h.ctx, url)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || h.ctx.Err() != nil {
			return fmt.Errorf("kube-apiserver on %s not ready %v after its restart (%w): the API VIP stays held there; "+
				"once it answers, run the command again or release it with tricenter-bgp release %s on the server",
				name, h.e.cfg.HealthTimeout, err, bgpagent.APIServerService)
		}
		select {
		case <-h.ctx.Done():
		case <-time.After(time.Second):
		}
	}
	hs, err := h.m.Hosts(inventory.Selector{Servers: []string{name}})
	if err != nil {
		return err
	}
	h.e.log.Info("Releasing the API VIP on the server: its kube-apiserver is ready", "host", name)
	return bgpagent.Release(h.ctx, hs[0], bgpagent.APIServerService)
}

// finish releases what is still held and closes the manager: the servers
// held during the run and the errors met.
func (h *apiHolds) finish(context.Context) (held, warnings []string, err error) {
	h.release()
	h.m.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.all, h.warnings, errors.Join(h.errs...)
}
