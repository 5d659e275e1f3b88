package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// RecordFormat is the format of the Record this program writes.
const RecordFormat = 1

// Record is an upgrade in progress as the state keeps it: the plan (and its
// digest), what was seen done, the nodes the upgrade cordoned, and why it
// paused. It says what was planned; whether a step is done is always
// observed again (Step.Done), never taken from Completed alone.
type Record struct {
	Format  int       `json:"format"`
	Digest  string    `json:"digest"`
	Plan    Plan      `json:"plan"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Completed are the steps seen done, in plan order.
	Completed []string `json:"completed,omitempty"`
	// Cordoned are the nodes the upgrade cordoned and has not uncordoned
	// yet (a node cordoned before the upgrade stays cordoned after it).
	Cordoned []string `json:"cordoned,omitempty"`
	Paused   *Pause   `json:"paused,omitempty"`
}

// Pause is why an upgrade stopped: the step, its server(s), the reason.
type Pause struct {
	Step   string    `json:"step"`
	Number int       `json:"number"`
	Host   string    `json:"host"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

func (p *Pause) String() string {
	return fmt.Sprintf("step %d (%s) on %s: %s", p.Number, p.Step, p.Host, p.Reason)
}

// PausedError is Execute's error: the upgrade stopped at a step.
type PausedError struct{ Pause Pause }

func (e *PausedError) Error() string {
	return fmt.Sprintf("upgrade paused at %s: once that is fixed, run tricenter upgrade again to resume", e.Pause.String())
}

// NewRecord starts the record of an upgrade of p.
func NewRecord(p *Plan, now time.Time) *Record {
	return &Record{Format: RecordFormat, Digest: p.Digest(), Plan: *p, Started: now.UTC(), Updated: now.UTC()}
}

// Encode is the record as the state keeps it (indented JSON).
func (r *Record) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeRecord reads a record, refusing another format and a plan that
// does not match its digest (the file was edited or is damaged).
func DecodeRecord(b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("the upgrade record is not JSON (%w)", err)
	}
	if r.Format != RecordFormat {
		return nil, fmt.Errorf("the upgrade record has format %d, this program reads %d", r.Format, RecordFormat)
	}
	if d := r.Plan.Digest(); d != r.Digest {
		return nil, fmt.Errorf("the upgrade record's plan has digest %s, the record says %s: the file was changed by hand", d, r.Digest)
	}
	return &r, nil
}

// Journal keeps a Record and saves it (atomically, by save) after every
// change, so a run killed at any point leaves what it knew behind. It is
// safe for concurrent use (the steps of a batch run at once).
type Journal struct {
	mu   sync.Mutex
	rec  *Record
	save func([]byte) error
	now  func() time.Time
}

// NewJournal keeps rec, saving it through save.
func NewJournal(rec *Record, save func([]byte) error, now func() time.Time) *Journal {
	if now == nil {
		now = time.Now
	}
	return &Journal{rec: rec, save: save, now: now}
}

// Record is a copy of the record as it is now.
func (j *Journal) Record() Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := *j.rec
	r.Completed, r.Cordoned = slices.Clone(r.Completed), slices.Clone(r.Cordoned)
	if r.Paused != nil {
		p := *r.Paused
		r.Paused = &p
	}
	return r
}

// write saves the record; the caller holds mu.
func (j *Journal) write() error {
	j.rec.Updated = j.now().UTC()
	b, err := j.rec.Encode()
	if err != nil {
		return err
	}
	if err := j.save(b); err != nil {
		return fmt.Errorf("saving the upgrade record: %w", err)
	}
	return nil
}

// Cordoning records, before it happens, that the upgrade cordons node
// (call it only for a node that is schedulable now).
func (j *Journal) Cordoning(node string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if slices.Contains(j.rec.Cordoned, node) {
		return nil
	}
	j.rec.Cordoned = append(j.rec.Cordoned, node)
	return j.write()
}

// Uncordoned records that the upgrade made node schedulable again.
func (j *Journal) Uncordoned(node string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := slices.Index(j.rec.Cordoned, node)
	if i < 0 {
		return nil
	}
	j.rec.Cordoned = slices.Delete(j.rec.Cordoned, i, i+1)
	return j.write()
}

// CordonedByUpgrade says whether the upgrade cordoned node (and has not
// uncordoned it yet).
func (j *Journal) CordonedByUpgrade(node string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Contains(j.rec.Cordoned, node)
}

func (j *Journal) completed(ids []string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, id := range ids {
		if !slices.Contains(j.rec.Completed, id) {
			j.rec.Completed = append(j.rec.Completed, id)
		}
	}
	j.rec.Paused = nil
	return j.write()
}

func (j *Journal) forget(ids []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rec.Completed = slices.DeleteFunc(j.rec.Completed, func(id string) bool { return slices.Contains(ids, id) })
}

func (j *Journal) paused(p *Pause) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	p.At = j.now().UTC()
	j.rec.Paused = p
	return j.write()
}

// reached says whether v is where step s leaves its component: at To, or
// (an upgrade) past To but not past Target.
func reached(v inventory.Version, s Step) bool {
	from, err1 := inventory.ParseVersion(s.From)
	to, err2 := inventory.ParseVersion(s.To)
	target, err3 := inventory.ParseVersion(s.Target)
	if err := errors.Join(err1, err2, err3); err != nil {
		return false
	}
	if to.Compare(from) >= 0 {
		return v.Compare(to) >= 0 && v.Compare(target) <= 0
	}
	return v == to
}

// probed is the version host's probe says bin runs, or why it cannot.
func probed(obs *Observation, host, bin string) (inventory.Version, string) {
	hp, ok := obs.Hosts[host]
	if !ok {
		return inventory.Version{}, "the server was not asked"
	}
	b, ok := hp[bin]
	switch {
	case !ok || b.Installed == (inventory.Version{}):
		return inventory.Version{}, bin + " is not installed"
	case !b.Running:
		return inventory.Version{}, bin + " does not run"
	case b.Stale:
		return inventory.Version{}, bin + " runs a binary replaced since it started (a restart is due)"
	}
	return b.Installed, ""
}

// Done says whether obs shows step s done, and when not, why. A node step
// is done once its Node is Ready and, when the upgrade cordoned it,
// schedulable again.
func (s Step) Done(obs *Observation, cordonedByUpgrade bool) (bool, string) {
	check := func(comp string, versions map[string]inventory.Version) (bool, string) {
		v, ok := versions[s.Host]
		if !ok {
			why := obs.Unobserved[comp+" on "+s.Host]
			if why == "" {
				why = "no answer"
			}
			return false, fmt.Sprintf("%s on %s not observed (%s)", comp, s.Host, why)
		}
		if !reached(v, s) {
			return false, fmt.Sprintf("%s on %s runs %s, not %s", comp, s.Host, v, s.To)
		}
		return true, ""
	}
	checkBin := func(bin string) (bool, string) {
		v, why := probed(obs, s.Host, bin)
		if why != "" {
			return false, fmt.Sprintf("%s on %s: %s", bin, s.Host, why)
		}
		if !reached(v, s) {
			return false, fmt.Sprintf("%s on %s runs %s, not %s", bin, s.Host, v, s.To)
		}
		return true, ""
	}
	switch s.Component {
	case CompEtcd:
		return check(BinEtcd, obs.Etcd)
	case CompControlPlane:
		if ok, why := check(BinAPIServer, obs.APIServer); !ok {
			return ok, why
		}
		if ok, why := checkBin(BinControllerManager); !ok {
			return ok, why
		}
		return checkBin(BinScheduler)
	case CompNode:
		if ok, why := check(BinKubelet, obs.Kubelet); !ok {
			return ok, why
		}
		if ok, why := checkBin(BinKubeProxy); !ok {
			return ok, why
		}
		n, ok := obs.Nodes[s.Host]
		switch {
		case !ok:
			return false, fmt.Sprintf("Node %s not observed", s.Host)
		case !n.Ready:
			return false, fmt.Sprintf("Node %s is not Ready (%s)", s.Host, n.Reason)
		case n.Unschedulable && cordonedByUpgrade:
			return false, fmt.Sprintf("Node %s is still cordoned by the upgrade", s.Host)
		}
		return true, ""
	}
	return false, fmt.Sprintf("unknown component %q", s.Component)
}

// Statuses says, per step ID, "done" when obs shows it done, else
// "pending".
func Statuses(p *Plan, obs *Observation, cordonedByUpgrade func(string) bool) map[string]string {
	out := map[string]string{}
	for _, s := range p.Steps {
		out[s.ID] = "pending"
		if ok, _ := s.Done(obs, cordonedByUpgrade != nil && cordonedByUpgrade(s.Host)); ok {
			out[s.ID] = "done"
		}
	}
	return out
}

// CheckProgress checks that a cluster found half upgraded is on the
// recorded plan's way: each component of each planned server runs the
// version it started from or one a step of the plan takes it to.
func CheckProgress(p *Plan, obs *Observation) error {
	type path struct {
		comp, host string
		allowed    []string
	}
	var paths []*path
	byKey := map[string]*path{}
	for _, s := range p.Steps {
		k := s.Component + "/" + s.Host
		pt := byKey[k]
		if pt == nil {
			pt = &path{comp: s.Component, host: s.Host, allowed: []string{s.From}}
			byKey[k] = pt
			paths = append(paths, pt)
		}
		pt.allowed = append(pt.allowed, s.To)
	}
	versions := map[string]map[string]inventory.Version{CompEtcd: obs.Etcd, CompControlPlane: obs.APIServer, CompNode: obs.Kubelet}
	names := map[string]string{CompEtcd: BinEtcd, CompControlPlane: BinAPIServer, CompNode: BinKubelet}
	is := issues{}
	for _, pt := range paths {
		v, ok := versions[pt.comp][pt.host]
		if !ok || slices.Contains(pt.allowed, v.String()) {
			continue
		}
		is.add(names[pt.comp], pt.host, "runs %s, on no step of the upgrade in progress (%s): plan it anew with --replan",
			v, strings.Join(slices.Compact(pt.allowed), " → "))
	}
	return is.err()
}

// StepError is an Executor's error for one step.
type StepError struct {
	Step Step
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s on %s: %v", e.Step.Component, e.Step.Host, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Executor observes the cluster and runs steps for Execute.
type Executor interface {
	// Observe observes the cluster now, asking the named servers
	// themselves (ProbeCommand) besides the APIs.
	Observe(ctx context.Context, hosts []string) (*Observation, error)
	// Run runs steps, the ones of one batch not done yet; an error per
	// step is a *StepError (joined with errors.Join when several failed).
	Run(ctx context.Context, steps []Step, j *Journal) error
}

// Outcome is what Execute did.
type Outcome struct {
	// AlreadyDone are the steps observed done before this run reached
	// them; Ran are the steps this run executed and then observed done.
	AlreadyDone []string `json:"alreadyDone,omitempty"`
	Ran         []string `json:"ran,omitempty"`
	// Took is how long each batch this run executed took (run and
	// observed done), by the IDs of its steps.
	Took map[string]time.Duration `json:"took,omitempty"`
}

// Execute runs the plan batch after batch. Before each batch it observes
// which of its steps are done (a step the record lists as completed but
// the cluster does not show done runs again); it runs the others, then
// observes again: each must now be done. The journal records every
// completed batch. A failure, a step that is still not done or a
// cancelled ctx pauses the upgrade: the journal records why and Execute
// returns a *PausedError. Running Execute again with the same journal
// resumes at the first step not done.
func Execute(ctx context.Context, p *Plan, j *Journal, x Executor) (*Outcome, error) {
	out := &Outcome{Took: map[string]time.Duration{}}
	for _, batch := range p.Batches() {
		start := time.Now()
		hosts := make([]string, 0, len(batch))
		ids := make([]string, 0, len(batch))
		for _, s := range batch {
			hosts, ids = append(hosts, s.Host), append(ids, s.ID)
		}
		if err := ctx.Err(); err != nil {
			return out, pause(j, batch, nil, fmt.Sprintf("interrupted before it started (%v)", context.Cause(ctx)))
		}
		obs, err := x.Observe(ctx, hosts)
		if err != nil {
			return out, pause(j, batch, nil, "observing the cluster: "+err.Error())
		}
		var todo []Step
		for _, s := range batch {
			if ok, _ := s.Done(obs, j.CordonedByUpgrade(s.Host)); ok {
				out.AlreadyDone = append(out.AlreadyDone, s.ID)
				continue
			}
			todo = append(todo, s)
		}
		if len(todo) == 0 {
			if err := j.completed(ids); err != nil {
				return out, err
			}
			continue
		}
		var again []string
		for _, s := range todo {
			again = append(again, s.ID)
		}
		j.forget(again) // recorded as completed but not done: it runs again
		if err := x.Run(ctx, todo, j); err != nil {
			return out, pauseFor(j, todo, err)
		}
		if obs, err = x.Observe(ctx, hosts); err != nil {
			return out, pause(j, todo, nil, "observing the cluster after the step: "+err.Error())
		}
		var left []Step
		var why []string
		for _, s := range todo {
			if ok, reason := s.Done(obs, j.CordonedByUpgrade(s.Host)); !ok {
				left, why = append(left, s), append(why, reason)
			}
		}
		if len(left) > 0 {
			return out, pause(j, left, nil, "not done after the step: "+strings.Join(why, "; "))
		}
		if err := j.completed(ids); err != nil {
			return out, err
		}
		out.Ran = append(out.Ran, again...)
		for _, id := range again {
			out.Took[id] = time.Since(start)
		}
	}
	return out, nil
}

// pauseFor pauses on the steps an Executor's error names (all of steps
// when it names none).
func pauseFor(j *Journal, steps []Step, err error) error {
	var failed []Step
	var why []string
	ses := stepErrors(err)
	for _, se := range ses {
		w := se.Err.Error()
		if len(ses) > 1 {
			w = se.Error() // names its server
		}
		failed, why = append(failed, se.Step), append(why, w)
	}
	if len(failed) == 0 {
		return pause(j, steps, nil, err.Error())
	}
	return pause(j, failed, why, "")
}

// stepErrors finds the *StepErrors in err, through errors.Join.
func stepErrors(err error) []*StepError {
	var out []*StepError
	var se *StepError
	if errors.As(err, &se) {
		if m, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range m.Unwrap() {
				out = append(out, stepErrors(e)...)
			}
			return out
		}
		return []*StepError{se}
	}
	return nil
}

// pause records the pause on steps (the first names it) with one reason
// per step (why) or one for all (reason), and returns the PausedError.
func pause(j *Journal, steps []Step, why []string, reason string) error {
	var hosts []string
	for _, s := range steps {
		hosts = append(hosts, s.Host)
	}
	if reason == "" {
		reason = strings.Join(why, "; ")
	}
	p := &Pause{Step: steps[0].ID, Number: steps[0].Number, Host: strings.Join(hosts, ", "), Reason: reason}
	if err := j.paused(p); err != nil {
		return errors.Join(&PausedError{Pause: *p}, err)
	}
	return &PausedError{Pause: *p}
}
