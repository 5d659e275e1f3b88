package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// DefaultPodTrustWait is how long RotateCA waits, once every namespace's
// kube-root-ca.crt ConfigMap holds the Kubernetes CA bundle, for the
// kubelets to refresh the pods' copies (they sync a pod's volumes about
// once a minute) before the API serves a certificate of the new CA.
const DefaultPodTrustWait = 90 * time.Second

// DefaultRootCATimeout bounds the wait for kube-controller-manager to
// publish the bundle in every namespace's kube-root-ca.crt.
const DefaultRootCATimeout = 5 * time.Minute

// RootCAConfigMap is the ConfigMap kube-controller-manager publishes its
// --root-ca-file in, in every namespace (pods mount it with their
// service-account token).
const RootCAConfigMap = "kube-root-ca.crt"

// RotateCAOptions configure PlanRotateCA and RotateCA.
type RotateCAOptions struct {
	// LockTimeout is as Options.LockTimeout.
	LockTimeout time.Duration
	// Until stops the run once this phase is applied (another run resumes
	// the rotation); empty runs it to the end.
	Until pki.RotationPhase
	// PodTrustWait is DefaultPodTrustWait when zero (negative: no wait).
	PodTrustWait time.Duration
	// RootCATimeout is DefaultRootCATimeout when zero.
	RootCATimeout time.Duration
}

// CARotationStep is one phase of a CA rotation: which components its
// apply runs, on which servers, and where it stands.
type CARotationStep struct {
	Phase pki.RotationPhase `json:"phase"`
	// What the phase writes, in words.
	What       string      `json:"what"`
	Components []Component `json:"components"`
	Hosts      []string    `json:"hosts"`
	// Status is "done", "next" (the run starts or resumes there) or
	// "pending".
	Status string `json:"status"`
	// Changes are the files the phase's apply changed, by host (RotateCA
	// only).
	Changes map[string][]string `json:"changes,omitempty"`
	Took    time.Duration       `json:"took,omitempty"`
}

// RotateCAResult is what PlanRotateCA found or RotateCA did.
type RotateCAResult struct {
	DryRun    bool   `json:"dryRun"`
	Authority string `json:"authority"`
	// Split: the rotation splits the etcd peer CA from the etcd CA (a
	// cluster created before the split).
	Split bool `json:"split,omitempty"`
	// InProgress says a rotation is recorded (started at Started).
	InProgress bool      `json:"inProgress"`
	Started    time.Time `json:"started,omitzero"`
	// Old and Next are the CA fingerprints (Next is unknown before a new
	// rotation starts).
	Old   string           `json:"old,omitempty"`
	Next  string           `json:"next,omitempty"`
	Steps []CARotationStep `json:"steps"`
	// Complete: the next CA replaced the old one (RotateCA only).
	Complete bool          `json:"complete,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Took     time.Duration `json:"took"`
}

// caRotationComponents are the components whose files hold an
// authority's certificates (the gates verify each phase).
func caRotationComponents(authority string) ([]Component, error) {
	switch authority {
	case pki.KubernetesCA:
		// Control plane (CA files, kubeconfigs, serving and client
		// certificates), kubelets and kube-proxy (their CA, kubeconfigs
		// and certificates), and the BGP agents' kubeconfigs for the
		// LoadBalancer watch (their API health check reads the control
		// plane's CA file, again whenever it changes).
		return []Component{BGP, ControlPlane, Nodes, Gates}, nil
	case pki.FrontProxyCA:
		return []Component{ControlPlane, Gates}, nil
	case pki.EtcdCA:
		// etcd's own files, then kube-apiserver's etcd CA and client
		// certificate.
		return []Component{Etcd, ControlPlane, Gates}, nil
	case pki.EtcdPeerCA:
		return []Component{Etcd, Gates}, nil
	}
	return nil, fmt.Errorf("authority %q: rotate one of %s", authority, strings.Join(pki.Rotatable(), ", "))
}

func caPhaseWhat(authority string, p pki.RotationPhase, split bool) string {
	switch {
	case split && p == pki.RotationTrust:
		return "the members' peer side trusts the etcd CA and the new peer CA (no common-name check yet)"
	case split && p == pki.RotationReissue:
		return "peer certificates reissued by the new peer CA (common name " + pki.EtcdPeerCN + ")"
	case split && p == pki.RotationFinish:
		return "the peer side trusts the new peer CA only, with --peer-cert-allowed-cn " + pki.EtcdPeerCN
	case p == pki.RotationTrust:
		w := "every " + authority + " CA file holds the old and the new CA"
		if authority == pki.KubernetesCA {
			w += "; pods get both in kube-root-ca.crt"
		}
		return w
	case p == pki.RotationReissue:
		return "every certificate of the " + authority + " CA reissued by the new CA"
	default:
		return "every " + authority + " CA file holds the new CA only"
	}
}

// PlanRotateCA shows what RotateCA would do for authority: its phases,
// the components and servers each applies to, and where a rotation in
// progress stands. It changes nothing and connects to nothing.
func (e *Engine) PlanRotateCA(_ context.Context, authority string, _ RotateCAOptions) (*RotateCAResult, error) {
	start := time.Now()
	res, _, err := e.prepareCARotation(authority)
	if res != nil {
		res.DryRun = true
		res.Took = time.Since(start)
	}
	return res, err
}

// prepareCARotation reads the rotation in progress (nil when none) and
// refuses what cannot be rotated now.
func (e *Engine) prepareCARotation(authority string) (*RotateCAResult, *pki.Rotation, error) {
	comps, err := caRotationComponents(authority)
	if err != nil {
		return nil, nil, err
	}
	store := e.PKIStore()
	res := &RotateCAResult{Authority: authority}
	rot, err := store.Rotation(authority)
	if err != nil {
		return res, nil, err
	}
	if rot == nil {
		all, err := store.Rotations()
		if err != nil {
			return res, nil, err
		}
		if len(all) > 0 {
			r := all[0]
			return res, nil, fmt.Errorf("%w: the %s CA (phase %s): finish it first (tricenter certs rotate-ca --authority %s)",
				pki.ErrRotationInProgress, r.Authority, r.Phase, r.Authority)
		}
		old := authority
		if authority == pki.EtcdPeerCA {
			if ok, err := store.HasCA(pki.EtcdPeerCA); err != nil {
				return res, nil, err
			} else if !ok {
				res.Split, old = true, pki.EtcdCA
			}
		}
		fps, err := store.Fingerprints()
		if err != nil {
			return res, nil, err
		}
		if res.Old = fps[old]; res.Old == "" {
			return res, nil, fmt.Errorf("the state has no %s CA: run tricenter apply first", old)
		}
	} else {
		res.InProgress, res.Started, res.Split, res.Old, res.Next = true, rot.Started, rot.Split, rot.Old, rot.Next
	}
	rec, err := e.UpgradeInProgress()
	if err != nil {
		return res, nil, err
	}
	if rec != nil {
		return res, nil, fmt.Errorf("an upgrade to Kubernetes %s is in progress (started %s): finish it with tricenter upgrade, then rotate the CA",
			rec.Plan.Kubernetes, rec.Started.Format(time.RFC3339))
	}
	hosts := e.caHosts(comps, Options{})
	status := "next"
	for _, p := range pki.RotationPhases() {
		st := "pending"
		switch {
		case rot == nil:
			st, status = status, "pending"
		case rot.Completing:
			st = "done"
		case p == rot.Phase && !rot.Applied:
			st = "next"
		case p == rot.Phase || phaseBefore(p, rot.Phase):
			st = "done"
		case rot.Applied && slices.Index(pki.RotationPhases(), p) == slices.Index(pki.RotationPhases(), rot.Phase)+1:
			st = "next"
		}
		res.Steps = append(res.Steps, CARotationStep{Phase: p, What: caPhaseWhat(authority, p, res.Split), Components: comps,
			Hosts: hosts, Status: st})
	}
	return res, rot, nil
}

func phaseBefore(a, b pki.RotationPhase) bool {
	ps := pki.RotationPhases()
	return slices.Index(ps, a) < slices.Index(ps, b)
}

// RotateCA rotates the certificate authority called authority
// (pki.Rotatable) with the API answering throughout, in three phases
// (pki.RotationTrust, RotationReissue, RotationFinish): each advances the
// rotation in the state, then runs the apply of the components that hold
// the authority's files, which writes what changed and restarts
// components one server at a time behind their health checks (etcd
// members one at a time, kube-apiservers waiting for /readyz, kubelets
// within the concurrency bound), then the gates. After the Kubernetes CA's
// trust phase it waits for every namespace's kube-root-ca.crt to hold the
// bundle, then o.PodTrustWait, so pods trust the new CA before the API
// serves it. The rotation is recorded in the state at every step: a run
// that stops resumes, when run again, at the phase it was in. The
// rotation of the etcd peer CA of a cluster created before the split is
// the split. Each phase takes the engine's locks like Apply (a new etcd
// client per phase: the etcd CA's own rotation changes what it trusts).
func (e *Engine) RotateCA(ctx context.Context, authority string, o RotateCAOptions) (*RotateCAResult, error) {
	start := time.Now()
	res, rot, err := e.prepareCARotation(authority)
	if err != nil {
		return res, err
	}
	defer func() { res.Took = time.Since(start) }()
	comps, _ := caRotationComponents(authority)
	only := make([]string, 0, len(comps))
	for _, c := range comps {
		only = append(only, string(c))
	}
	store := e.PKIStore()
	// step runs f under the engine's locks.
	locked := func(f func() error) error {
		l, err := e.Lock(ctx, LockOptions{Timeout: o.LockTimeout})
		if err != nil {
			return err
		}
		defer l.Release()
		return f()
	}
	if rot == nil {
		err := locked(func() error {
			var err error
			rot, err = store.StartRotation(authority)
			return err
		})
		if err != nil {
			return res, err
		}
		e.log.Info("Started the CA rotation", "authority", authority, "split", rot.Split, "next", rot.Next)
		res.InProgress, res.Started, res.Next, res.Split = true, rot.Started, rot.Next, rot.Split
	}
	for {
		if rot, err = store.Rotation(authority); err != nil {
			return res, err
		}
		if rot == nil {
			res.Complete, res.InProgress = true, false
			e.log.Info("CA rotation complete", "authority", authority, "ca", res.Next)
			return res, nil
		}
		if rot.Applied || rot.Completing {
			if rot.Completing || rot.Phase == pki.RotationFinish {
				e.log.Info("Replacing the CA with the next one", "authority", authority)
			}
			err := locked(func() error {
				_, err := store.AdvanceRotation(authority)
				return err
			})
			if err != nil {
				return res, fmt.Errorf("advancing the %s CA rotation from %s: %w (run again to resume)", authority, rot.Phase, err)
			}
			continue
		}
		i := slices.Index(pki.RotationPhases(), rot.Phase)
		step := &res.Steps[i]
		title := fmt.Sprintf("rotate-ca %s phase %d of %d: %s", authority, i+1, len(pki.RotationPhases()), rot.Phase)
		e.cfg.Progress.PhaseStart(title, len(step.Hosts))
		t0 := time.Now()
		err := e.applyCAPhase(ctx, authority, rot, only, o, step)
		step.Took = time.Since(t0)
		e.cfg.Progress.PhaseDone(title, err, step.Took)
		if err != nil {
			step.Status = "next"
			return res, fmt.Errorf("%s CA rotation, phase %s: %w (the state records the phase: run tricenter certs rotate-ca --authority %s again to resume)",
				authority, rot.Phase, err, authority)
		}
		step.Status = "done"
		if err := store.MarkRotationApplied(authority); err != nil {
			return res, err
		}
		if o.Until != "" && o.Until == rot.Phase {
			e.log.Info("CA rotation stopped as asked", "authority", authority, "phase", rot.Phase)
			return res, nil
		}
	}
}

// applyCAPhase runs the apply of one phase and what must hold before the
// next one.
func (e *Engine) applyCAPhase(ctx context.Context, authority string, rot *pki.Rotation, only []string, o RotateCAOptions, step *CARotationStep) error {
	store := e.PKIStore()
	e.log.Info("Applying a CA rotation phase", "authority", authority, "phase", rot.Phase, "components", strings.Join(only, ","))
	if authority == pki.KubernetesCA && rot.Phase == pki.RotationReissue {
		// The credentials kept in the state and used by no server: the
		// admin and break-glass certificates.
		if _, err := store.EnsureAdmin(); err != nil && !errors.Is(err, pki.ErrNoAdmin) {
			return err
		}
		if _, err := store.Load(pki.KubernetesCA, pki.AdminBreakGlass); err == nil {
			if _, err := store.EnsureBreakGlass(); err != nil {
				return err
			}
		} else if !errors.Is(err, pki.ErrNotFound) {
			return err
		}
	}
	r, err := e.Apply(ctx, Options{Only: only, LockTimeout: o.LockTimeout})
	if r != nil {
		step.Changes = r.Changes
	}
	if err != nil {
		return err
	}
	if authority == pki.KubernetesCA && rot.Phase == pki.RotationTrust {
		ca, err := store.LoadCA(pki.KubernetesCA)
		if err != nil {
			return err
		}
		if err := e.waitRootCA(ctx, ca.CertPEM, o); err != nil {
			return err
		}
		// The add-on that talks to the API from pods gets new pods,
		// which read the bundle; the users' own are theirs to restart
		// (docs/cli/certs.md).
		cs, err := e.Clientset()
		if err != nil {
			return err
		}
		e.log.Info("Restarting CoreDNS so that its pods trust the new CA")
		if err := addons.RestartCoreDNS(ctx, cs, e.cfg.Clock(), e.cfg.HealthTimeout); err != nil {
			return err
		}
	}
	return nil
}

// rootCAPoll is how often waitRootCA looks.
const rootCAPoll = 2 * time.Second

// waitRootCA waits until kube-root-ca.crt in every namespace holds the
// certificates of bundle, then o.PodTrustWait.
func (e *Engine) waitRootCA(ctx context.Context, bundle []byte, o RotateCAOptions) error {
	want, err := certFingerprints(bundle)
	if err != nil {
		return err
	}
	timeout := o.RootCATimeout
	if timeout <= 0 {
		timeout = DefaultRootCATimeout
	}
	deadline := time.Now().Add(timeout)
	var behind []string
	for {
		behind, err = e.rootCABehind(ctx, want)
		if err == nil && len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("reading the %s ConfigMaps: %w", RootCAConfigMap, err)
			}
			return fmt.Errorf("%s does not hold the new Kubernetes CA after %v in namespaces %s: see journalctl -u kube-controller-manager on the control-plane servers",
				RootCAConfigMap, timeout, strings.Join(behind[:min(len(behind), 10)], ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(rootCAPoll):
		}
	}
	wait := o.PodTrustWait
	if wait == 0 {
		wait = DefaultPodTrustWait
	}
	if wait > 0 {
		e.log.Info("Waiting for the kubelets to refresh the pods' CA bundle", "wait", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil
}

// rootCABehind lists the namespaces whose kube-root-ca.crt does not hold
// exactly the certificates want.
func (e *Engine) rootCABehind(ctx context.Context, want []string) ([]string, error) {
	cs, err := e.Clientset()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nss, err := cs.CoreV1().Namespaces().List(cctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var behind []string
	for _, ns := range nss.Items {
		if ns.Status.Phase == "Terminating" {
			continue
		}
		cm, err := cs.CoreV1().ConfigMaps(ns.Name).Get(cctx, RootCAConfigMap, metav1.GetOptions{})
		if err != nil {
			behind = append(behind, ns.Name)
			continue
		}
		got, err := certFingerprints([]byte(cm.Data["ca.crt"]))
		if err != nil || !sameSet(got, want) {
			behind = append(behind, ns.Name)
		}
	}
	return behind, nil
}

func certFingerprints(b []byte) ([]string, error) {
	cs, err := pki.ParseCerts(b)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, pki.Fingerprint(c))
	}
	return out, nil
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// parseCABundles reads caQuery's output into the fingerprints of every
// certificate of each file, by path (a file without a certificate, the
// service-account key, is left out).
func parseCABundles(out string) map[string][]string {
	fps := map[string][]string{}
	var path string
	var buf bytes.Buffer
	flush := func() {
		if path != "" {
			if got, err := certFingerprints(buf.Bytes()); err == nil {
				fps[path] = got
			}
		}
	}
	for _, l := range strings.SplitAfter(out, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(l), "==> "); ok {
			flush()
			path = p
			buf.Reset()
			continue
		}
		buf.WriteString(l)
	}
	flush()
	return fps
}

// rotationState adds to the state's fingerprints (pki.Store.Fingerprints)
// the next CA of an authority the state does not hold yet (the etcd peer
// CA being split): what CompareCAs compares with.
func rotationState(state map[string]string, known map[string]pki.KnownCA) map[string]string {
	out := maps.Clone(state)
	if out == nil {
		out = map[string]string{}
	}
	for a, k := range known {
		if out[a] == "" && k.Next != "" {
			out[a] = k.Next
		}
	}
	return out
}

// acceptBundle is the fingerprint CompareCAs judges for a server's file
// of authority whose first certificate is first and whose certificates
// are all: the state's own when the file is one a CA rotation explains
// (pki.KnownCA.Accepts: old and next CA during a rotation, or the old and
// the current one left after it), otherwise the first certificate the
// state does not know (or first), so that a foreign CA is still refused
// and named.
func acceptBundle(state map[string]string, known map[string]pki.KnownCA, authority, first string, all []string) string {
	k, ok := known[authority]
	switch {
	case len(all) == 0:
		return first
	case !ok || !k.Accepts(all):
		// A certificate the state does not know, when there is one, is
		// the one to name (a foreign CA after the state's own).
		for _, fp := range all {
			if fp != k.Current && fp != k.Next && !slices.Contains(k.Old, fp) {
				return fp
			}
		}
		return first
	}
	if fp := state[authority]; fp != "" {
		return fp
	}
	return first
}
