package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// RenewOptions select the leaf certificates RenewCertificates reissues:
// every leaf the inventory uses when nothing is selected; the selections
// combine (a leaf must pass each one given).
type RenewOptions struct {
	// Kinds keeps the leaves of these kinds (RenewableKinds).
	Kinds []string
	// Servers keeps the per-server leaves of these servers (etcd peer
	// and server, kubelet client and serving).
	Servers []string
	// Due keeps the leaves within spec.pki.renewBefore of their expiry
	// or expired.
	Due bool
	// LockTimeout is as Options.LockTimeout.
	LockTimeout time.Duration
}

// RenewableKinds are the kinds of leaf certificates a renewal selects
// (pki.CertKind's names). Authorities are renewed by a CA rotation; the
// service-account key has no certificate.
func RenewableKinds() []string {
	return []string{pki.KindEtcdPeer, pki.KindEtcdServer, pki.KindEtcdClient, pki.KindAPIServerServing,
		pki.KindAPIServerKubeletClient, pki.KindFrontProxyClient, pki.KindControllerManager, pki.KindScheduler,
		pki.KindKubeletClient, pki.KindKubeletServing, pki.KindKubeProxy, pki.KindLBAgent, pki.KindAdmin, pki.KindAdminBreakGlass}
}

// RenewCertificate is one leaf of a renewal.
type RenewCertificate struct {
	pki.StoredLeaf
	// Component installs it on the servers and restarts what reads it
	// ("" for a certificate kept in the state only: the admin ones and
	// tricenter's own etcd client).
	Component Component `json:"component,omitempty"`
	// Renewed: it was issued since the renewal started.
	Renewed bool `json:"renewed"`
}

// RenewRestart is a unit a renewal restarts on servers (one at a time for
// etcd and the control plane, the API VIP held away from the server).
type RenewRestart struct {
	Component Component `json:"component"`
	Unit      string    `json:"unit"`
	Servers   []string  `json:"servers"`
}

// RenewResult is a renewal's plan and, once run, what it did.
type RenewResult struct {
	// Started is when the renewal began (zero in the plan of a new one):
	// a selected leaf issued before it is reissued.
	Started time.Time `json:"started,omitzero"`
	// Resumed: an unfinished renewal was found in the state; its leaves
	// are part of this one.
	Resumed      bool               `json:"resumed,omitempty"`
	Certificates []RenewCertificate `json:"certificates"`
	Components   []Component        `json:"components,omitempty"`
	Restarts     []RenewRestart     `json:"restarts,omitempty"`
	// Renewed counts the certificates issued since Started (after a run).
	Renewed int `json:"renewed"`
	// Apply is the apply that installed them and restarted the units.
	Apply *Result `json:"apply,omitempty"`
	// Held are the servers the API VIP was held away from, in order.
	Held []string `json:"held,omitempty"`
	// EarliestExpiry is the first leaf expiry after the run, and what.
	EarliestExpiry time.Time `json:"earliestExpiry,omitzero"`
	EarliestWhat   string    `json:"earliestWhat,omitempty"`
	Warnings       []string  `json:"warnings,omitempty"`
}

// PlanRenewal lists the certificates a RenewCertificates with o would
// reissue, the components that install them and the units that restart.
// It changes nothing.
func (e *Engine) PlanRenewal(_ context.Context, o RenewOptions) (*RenewResult, error) {
	if err := e.checkRenewOptions(o); err != nil {
		return nil, err
	}
	s := e.PKIStore()
	s.Now = e.cfg.Clock
	if ok, err := s.HasCA(pki.KubernetesCA); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: nothing to renew before the first apply", ErrNoPKI)
	}
	inUse, err := e.certificateInUse(s)
	if err != nil {
		return nil, err
	}
	leaves, err := s.Leaves(inUse)
	if err != nil {
		return nil, err
	}
	rec, err := s.Renewal()
	if err != nil {
		return nil, err
	}
	if rec != nil && !rec.Finished.IsZero() {
		rec = nil
	}
	res := &RenewResult{}
	if rec != nil {
		res.Started, res.Resumed = rec.Started, true
	}
	for _, l := range leaves {
		comp, known := renewComponent(l)
		if !known {
			continue // nothing issues it any more: listed as unused by certs list
		}
		if !(rec != nil && rec.Lists(l.Authority, l.Name)) && !o.selects(l) {
			continue
		}
		c := RenewCertificate{StoredLeaf: l, Component: comp}
		c.Renewed = rec != nil && !pki.IssuedBefore(l.Cert, rec.Started)
		res.Certificates = append(res.Certificates, c)
	}
	e.renewRestarts(res)
	if len(e.Placement().ControlPlane) == 1 && res.restartsAPI() {
		res.Warnings = append(res.Warnings, "one control-plane server: the API is unavailable while its kube-apiserver restarts")
	}
	return res, nil
}

func (e *Engine) checkRenewOptions(o RenewOptions) error {
	var errs []error
	kinds := RenewableKinds()
	for _, k := range o.Kinds {
		if !slices.Contains(kinds, k) {
			errs = append(errs, fmt.Errorf("certificate kind %q: use one of %s", k, strings.Join(kinds, ", ")))
		}
	}
	return errors.Join(append(errs, e.checkServers(o.Servers))...)
}

// selects reports whether l passes o's selections.
func (o RenewOptions) selects(l pki.StoredLeaf) bool {
	if len(o.Kinds) > 0 && !slices.Contains(o.Kinds, l.Kind) {
		return false
	}
	if len(o.Servers) > 0 && (l.Server == "" || !slices.Contains(o.Servers, l.Server)) {
		return false
	}
	return !o.Due || l.RenewDue || l.Expired
}

// renewComponent is the component that installs l on the servers (""
// for a certificate kept in the state only); known is false for a leaf
// no apply issues.
func renewComponent(l pki.StoredLeaf) (c Component, known bool) {
	switch l.Kind {
	case pki.KindEtcdPeer, pki.KindEtcdServer:
		return Etcd, true
	case pki.KindEtcdClient:
		switch l.Name {
		case pki.APIServerClient:
			return ControlPlane, true
		case pki.AdminClient:
			return "", true
		case pki.SnapshotClient:
			// Installed on the snapshot stores by etcd/snapshots.
			return Etcd, true
		}
		return "", false
	case pki.KindAPIServerServing, pki.KindAPIServerKubeletClient, pki.KindFrontProxyClient,
		pki.KindControllerManager, pki.KindScheduler:
		return ControlPlane, true
	case pki.KindKubeletClient, pki.KindKubeletServing, pki.KindKubeProxy:
		return Nodes, true
	case pki.KindLBAgent:
		return BGP, true
	case pki.KindAdmin, pki.KindAdminBreakGlass:
		return "", true
	}
	return "", false
}

// renewUnit is the unit that reads l.
// ("" for a file read by a job at its next run, nothing to restart).
func renewUnit(l pki.StoredLeaf) string {
	if l.Kind == pki.KindEtcdClient && l.Name == pki.SnapshotClient {
		return ""
	}
	switch l.Kind {
	case pki.KindEtcdPeer, pki.KindEtcdServer:
		return etcd.Unit
	case pki.KindControllerManager:
		return controlplane.UnitName(controlplane.ControllerManager)
	case pki.KindScheduler:
		return controlplane.UnitName(controlplane.Scheduler)
	case pki.KindKubeletClient, pki.KindKubeletServing:
		return node.KubeletUnit
	case pki.KindKubeProxy:
		return node.KubeProxyUnit
	case pki.KindLBAgent:
		return bgpagent.UnitName
	}
	return controlplane.UnitName(controlplane.APIServer)
}

// renewRestarts fills res's components and restarts from its
// certificates (a unit restarts where a file it reads changed).
func (e *Engine) renewRestarts(res *RenewResult) {
	comps := map[Component]bool{}
	servers := map[string]map[string]bool{} // component/unit → servers
	var cp []string
	for _, m := range e.Placement().ControlPlane {
		cp = append(cp, m.Name)
	}
	// Renewed ones too: a stopped run may have issued them without
	// installing them (the apply changes nothing where they are).
	for _, c := range res.Certificates {
		if c.Component == "" {
			continue
		}
		comps[c.Component] = true
		if renewUnit(c.StoredLeaf) == "" {
			continue
		}
		key := string(c.Component) + "\x00" + renewUnit(c.StoredLeaf)
		if servers[key] == nil {
			servers[key] = map[string]bool{}
		}
		var on []string
		switch {
		case c.Server != "":
			on = []string{c.Server}
		case c.Component == ControlPlane:
			on = cp
		default: // kube-proxy: every node
			on = hostNames(e.cfg.Cluster.Hosts())
		}
		for _, s := range on {
			servers[key][s] = true
		}
	}
	res.Components = nil
	for _, c := range []Component{Etcd, BGP, ControlPlane, Nodes} {
		if comps[c] {
			res.Components = append(res.Components, c)
		}
	}
	res.Restarts = nil
	for key, set := range servers {
		comp, unit, _ := strings.Cut(key, "\x00")
		r := RenewRestart{Component: Component(comp), Unit: unit}
		for s := range set {
			r.Servers = append(r.Servers, s)
		}
		sort.Strings(r.Servers)
		res.Restarts = append(res.Restarts, r)
	}
	order := map[Component]int{Etcd: 0, BGP: 1, ControlPlane: 2, Nodes: 3}
	sort.Slice(res.Restarts, func(i, j int) bool {
		a, b := res.Restarts[i], res.Restarts[j]
		if order[a.Component] != order[b.Component] {
			return order[a.Component] < order[b.Component]
		}
		return a.Unit < b.Unit
	})
}

// restartsAPI reports whether the renewal restarts kube-apiserver or a
// stacked etcd member.
func (r *RenewResult) restartsAPI() bool {
	for _, x := range r.Restarts {
		if x.Component == Etcd || x.Unit == controlplane.UnitName(controlplane.APIServer) {
			return true
		}
	}
	return false
}

// nodeServers are the servers whose node work the renewal needs (nil:
// every server, for kube-proxy's shared certificate).
func (r *RenewResult) nodeServers() []string {
	set := map[string]bool{}
	for _, c := range r.Certificates {
		if c.Component != Nodes && c.Component != BGP {
			continue
		}
		if c.Server == "" {
			return nil
		}
		set[c.Server] = true
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// RenewCertificates reissues the selected leaf certificates now and
// installs them: the renewal (its start and leaves) is recorded in the
// state first, then an apply limited to the components concerned runs,
// in which the store reissues every listed leaf issued before the start
// and the components restart what reads a changed file — etcd members
// one at a time with health checks, control-plane servers one at a time
// waiting for /readyz, kubelets and kube-proxy by the concurrency bound.
// The API VIP is held away from a control-plane server while its
// kube-apiserver (or its stacked etcd member) restarts and released once
// its /readyz answers, so the API serves throughout. A run that stops is
// resumed by running again: what was issued since the start is kept.
// Authorities and the service-account key are never renewed.
func (e *Engine) RenewCertificates(ctx context.Context, o RenewOptions) (*RenewResult, error) {
	res, err := e.PlanRenewal(ctx, o)
	if err != nil {
		return nil, err
	}
	if len(res.Certificates) == 0 {
		return res, nil
	}
	ctx, unlock, err := e.lockRun(ctx, Options{LockTimeout: o.LockTimeout}, &Result{})
	if err != nil {
		return res, err
	}
	defer unlock()
	s := e.PKIStore()
	s.Now = e.cfg.Clock
	ids := make([]string, 0, len(res.Certificates))
	for _, c := range res.Certificates {
		ids = append(ids, c.ID())
	}
	rec, err := s.BeginRenewal(ids, e.cfg.Clock())
	if err != nil {
		return res, err
	}
	res.Started = rec.Started
	e.log.Info("Renewing certificates", "certificates", len(ids), "started", rec.Started.Format(time.RFC3339),
		"components", fmt.Sprint(res.Components))
	if len(res.Components) > 0 {
		// A component brings its own gate (etcd healthy, the control
		// plane ready, the nodes Ready).
		var only []string
		for _, c := range res.Components {
			only = append(only, string(c))
		}
		res.Apply, err = e.run(ctx, Options{Only: only, Servers: res.nodeServers(), LockTimeout: o.LockTimeout, locked: true}, false)
		if res.Apply != nil {
			res.Held = res.Apply.APIHeld
		}
		if err != nil {
			return res, fmt.Errorf("installing the renewed certificates: %w (run tricenter certs renew again: it resumes, keeping what was renewed)", err)
		}
	}
	// Certificates kept in the state only: issued here.
	for _, c := range res.Certificates {
		var err error
		switch c.Kind {
		case pki.KindAdmin:
			_, err = s.EnsureAdmin()
		case pki.KindAdminBreakGlass:
			_, err = s.EnsureBreakGlass()
		}
		if err != nil {
			return res, fmt.Errorf("renewing %s: %w", c.File, err)
		}
	}
	if err := e.checkRenewed(s, res, rec); err != nil {
		return res, err
	}
	if err := s.FinishRenewal(e.cfg.Clock()); err != nil {
		return res, err
	}
	if r, err := e.CertificateExpiry(); err == nil {
		_, res.EarliestExpiry, res.EarliestWhat = r.RenewalDue()
	}
	e.log.Info("Certificates renewed", "renewed", res.Renewed, "earliest_expiry", res.EarliestExpiry.Format(time.RFC3339))
	return res, nil
}

// checkRenewed reads the renewal's leaves back: each must have been issued
// since it started.
func (e *Engine) checkRenewed(s *pki.Store, res *RenewResult, rec *pki.Renewal) error {
	leaves, err := s.Leaves(nil)
	if err != nil {
		return err
	}
	byID := map[string]pki.StoredLeaf{}
	for _, l := range leaves {
		byID[l.ID()] = l
	}
	var old []string
	res.Renewed = 0
	for i, c := range res.Certificates {
		l, ok := byID[c.ID()]
		if !ok {
			old = append(old, c.File+" (missing)")
			continue
		}
		res.Certificates[i].StoredLeaf = l
		res.Certificates[i].Renewed = !pki.IssuedBefore(l.Cert, rec.Started)
		if res.Certificates[i].Renewed {
			res.Renewed++
		} else {
			old = append(old, c.File)
		}
	}
	if len(old) > 0 {
		return fmt.Errorf("still issued before the renewal started (%s): %s: run tricenter certs renew again",
			rec.Started.Format(time.RFC3339), strings.Join(old, ", "))
	}
	return nil
}
