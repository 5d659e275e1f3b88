package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// start brings the control plane up so that the API stays up through a
// change: units are enabled, stopped ones started and running ones whose
// binary, unit or inputs changed restarted, and a server's /readyz must
// answer before the run moves on. Servers with nothing to restart serve
// no request that starting could break (a new cluster's control plane, a
// server added to it, a component found stopped): they start together.
// Then the servers with a running component to restart go one at a time,
// each ready before the next is touched. A server where nothing changed
// and everything runs is left alone.
func (r *run) start(ctx context.Context) error {
	hosts, err := r.m.Hosts(r.selector())
	if err != nil {
		return err
	}
	var together, rolling []*phase.Host
	for _, h := range hosts {
		if r.restarts(h) {
			rolling = append(rolling, h)
		} else {
			together = append(together, h)
		}
	}
	errs := make([]error, len(together))
	var wg sync.WaitGroup
	for i, h := range together {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.startHost(ctx, h); err != nil {
				errs[i] = &phase.HostError{Host: h.Name, Err: err}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, h := range rolling {
		if err := r.startHost(ctx, h); err != nil {
			return &phase.HostError{Host: h.Name, Err: err}
		}
	}
	return nil
}

// restarts reports whether start restarts a running component on h.
func (r *run) restarts(h *phase.Host) bool {
	st := r.state(h.Name)
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(unitActions(st.facts, st.changed), func(a unitAction) bool { return a.verb == verbRestart })
}

func (r *run) startHost(ctx context.Context, h *phase.Host) error {
	st := r.state(h.Name)
	r.mu.Lock()
	acts := unitActions(st.facts, st.changed)
	r.mu.Unlock()
	restarted := false
	for _, a := range acts {
		unit := UnitName(a.component)
		var err error
		switch a.verb {
		case verbEnable:
			err = h.Systemctl(ctx, "enable", unit)
		case verbStart:
			r.log.Info("Starting control-plane component", "host", h.Name, "unit", unit)
			err = h.Systemctl(ctx, "start", unit)
			restarted = true
		case verbRestart:
			r.log.Info("Restarting control-plane component: its binary, unit or a file it reads changed", "host", h.Name, "unit", unit)
			err = h.SystemctlRestart(ctx, unit)
			restarted = true
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", a.verb, unit, err)
		}
	}
	if !restarted || h.DryRun() {
		return nil
	}
	return r.waitReady(ctx, h)
}

// What start does with a unit.
const (
	verbEnable  = "enable"
	verbStart   = "start"
	verbRestart = "restart"
)

type unitAction struct{ verb, component string }

// unitActions decides, per component in start order: enable it when it is
// not enabled, start it when it is not running, restart it when it runs
// and its binary, unit or a file it reads changed; nothing otherwise.
func unitActions(facts *Facts, changed map[string]bool) []unitAction {
	var out []unitAction
	for _, c := range Components() {
		u := facts.Units[c]
		if !u.Enabled {
			out = append(out, unitAction{verbEnable, c})
		}
		switch {
		case !u.Active:
			out = append(out, unitAction{verbStart, c})
		case changed[c]:
			out = append(out, unitAction{verbRestart, c})
		}
	}
	return out
}

// readyChecks are the commands that must all succeed on a server before
// the next one is touched: the local apiserver's /readyz (read with the
// scheduler's kubeconfig: /readyz is open to every authenticated user),
// every unit active, and the controller-manager's and scheduler's
// /healthz on their secure ports (always allowed paths).
func (r *run) readyChecks() []readyCheck {
	kubectl := shell.Quote(r.path(BinDir + "/" + Kubectl))
	conf := shell.Quote(r.path(SchedulerConf))
	units := make([]string, 0, 3)
	for _, c := range Components() {
		units = append(units, shell.Quote(UnitName(c)))
	}
	health := func(port int) string {
		return fmt.Sprintf("%s --kubeconfig=%s --request-timeout=5s --server=https://127.0.0.1:%d --insecure-skip-tls-verify=true get --raw=/healthz 2>&1",
			kubectl, conf, port)
	}
	return []readyCheck{
		{APIServer + " /readyz", kubectl + " --kubeconfig=" + conf + " --request-timeout=5s get --raw=/readyz 2>&1"},
		{"units active", "systemctl is-active " + strings.Join(units, " ") + " 2>&1"},
		{ControllerManager + " /healthz", health(ControllerManagerPort)},
		{Scheduler + " /healthz", health(SchedulerPort)},
	}
}

// readyCheck is a named read-only command that succeeds when ready.
type readyCheck struct{ name, cmd string }

// waitReady polls the ready checks until they all pass or ReadyTimeout
// runs out.
func (r *run) waitReady(ctx context.Context, h *phase.Host) error {
	deadline := time.Now().Add(r.o.ReadyTimeout)
	checks := r.readyChecks()
	r.log.Info("Waiting for the control plane to be ready", "host", h.Name, "timeout", r.o.ReadyTimeout)
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	start := time.Now()
	for {
		failed, why := "", ""
		for _, c := range checks {
			out, err := h.Query(ctx, c.cmd)
			if err != nil {
				failed, why = c.name, strings.TrimSpace(out)
				if why == "" {
					why = err.Error()
				}
				break
			}
		}
		if failed == "" {
			r.log.Info("Control plane ready", "host", h.Name, "elapsed", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control plane not ready after %v (%s: %s): see journalctl -u %s -u %s -u %s on the server",
				r.o.ReadyTimeout, failed, lastLine(why), UnitName(APIServer), UnitName(ControllerManager), UnitName(Scheduler))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
