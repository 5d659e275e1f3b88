package encryption

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// A key rotation replaces the encrypting key with a new one in the order
// Kubernetes documents for a cluster of several kube-apiservers
// ("Rotating a decryption key"), every server reading every Secret at
// every moment:
//
//  1. add: the new key becomes the second key on every control-plane
//     server; once every kube-apiserver has loaded it, each can read what
//     any of them will write with it;
//  2. promote: the new key becomes the first key everywhere: every write
//     uses it;
//  3. rewrite: every Secret (and ConfigMap, when they are encrypted) is
//     rewritten through the API, and etcd is read to check each value
//     carries the new key's prefix (Key.Prefix);
//  4. drop: the old keys leave every server's configuration, then the
//     state.
//
// The stage under way is recorded in the keyring (Keyring.Rotation)
// before its work starts, and the next one only once that work is
// confirmed (every kube-apiserver reloaded the configuration, every value
// in etcd checked). So the state always holds every key any server holds
// (an apply in between never refuses and writes the stage's configuration
// itself, see Render), and a run that stops anywhere resumes at its stage:
// the servers hold the configuration of that stage or of the one before,
// and every pair of adjacent stages can read each other's writes.

// Stage is a step of a key rotation.
type Stage string

// The stages, in order.
const (
	StageAdd     Stage = "add"
	StagePromote Stage = "promote"
	StageRewrite Stage = "rewrite"
	StageDrop    Stage = "drop"
)

// Stages lists the stages in order.
func Stages() []Stage { return []Stage{StageAdd, StagePromote, StageRewrite, StageDrop} }

// Number is the stage's place, 1 to 4 (0: not a stage).
func (s Stage) Number() int { return slices.Index(Stages(), s) + 1 }

// Configures says whether the stage writes a configuration to the servers
// (the rewrite stage writes none).
func (s Stage) Configures() bool { return s == StageAdd || s == StagePromote || s == StageDrop }

// Rotation is a key rotation in progress.
type Rotation struct {
	// Key is the new key's name.
	Key string `json:"key"`
	// Stage is the stage under way: recorded before its work starts,
	// replaced by the next once that work is confirmed.
	Stage Stage `json:"stage"`
	// Started is when the rotation began.
	Started time.Time `json:"started"`
}

// check says what is wrong with the rotation of r: its key is in the ring,
// which holds an older key besides; the new key is second until it is
// promoted and first from then on.
func (o *Rotation) check(r *Keyring) error {
	if o.Stage.Number() == 0 {
		return fmt.Errorf("the rotation's stage %q is none of %s", o.Stage, joinStages())
	}
	i := slices.IndexFunc(r.Keys, func(k Key) bool { return k.Name == o.Key })
	switch {
	case i < 0:
		return fmt.Errorf("the rotation's new key %s is not in the keyring", o.Key)
	case len(r.Keys) < 2:
		return fmt.Errorf("the rotation to %s has no older key to replace", o.Key)
	case o.Stage == StageAdd && i == 0:
		return fmt.Errorf("the rotation's new key %s is first while it is only being added", o.Key)
	case o.Stage != StageAdd && i != 0:
		return fmt.Errorf("the rotation's new key %s is not first at stage %s", o.Key, o.Stage)
	}
	return nil
}

func joinStages() string {
	var s []string
	for _, st := range Stages() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// Prefix is what kube-apiserver puts before every value it stores
// encrypted with the key: k8s:enc:<provider>:v1:<name>:.
func (k Key) Prefix() string { return "k8s:enc:" + k.Provider + ":v1:" + k.Name + ":" }

// Key returns the ring's key called name.
func (r *Keyring) Key(name string) (Key, bool) {
	if r != nil {
		for _, k := range r.Keys {
			if k.Name == name {
				return k, true
			}
		}
	}
	return Key{}, false
}

// Clone is a copy of r.
func (r *Keyring) Clone() *Keyring {
	if r == nil {
		return nil
	}
	c := &Keyring{Keys: slices.Clone(r.Keys)}
	if r.Rotation != nil {
		o := *r.Rotation
		c.Rotation = &o
	}
	return c
}

// Serving is the keys the control-plane servers hold at the ring's stage,
// in order, without the rotation: every key of the ring, except at the
// drop stage, where only the new key is left (the state keeps the old
// ones until every server dropped them).
func (r *Keyring) Serving() *Keyring {
	if r.Rotation != nil && r.Rotation.Stage == StageDrop {
		if k, ok := r.Key(r.Rotation.Key); ok {
			return &Keyring{Keys: []Key{k}}
		}
	}
	return &Keyring{Keys: slices.Clone(r.Keys)}
}

// Retiring names the keys a rotation replaces (every key but the new
// one); nil without a rotation.
func (r *Keyring) Retiring() []string {
	if r == nil || r.Rotation == nil {
		return nil
	}
	var out []string
	for _, k := range r.Keys {
		if k.Name != r.Rotation.Key {
			out = append(out, k.Name)
		}
	}
	return out
}

// ErrRotating is wrapped when a rotation is begun while one is in
// progress.
var ErrRotating = errors.New("a key rotation is in progress")

// BeginRotation starts a rotation: a new key (key-<n+1>, DefaultProvider)
// second in the ring, at the add stage. The result must be saved before
// any server gets the key.
func BeginRotation(r *Keyring, now time.Time) (*Keyring, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Rotation != nil {
		return nil, fmt.Errorf("%w (to %s, at stage %s): resume it", ErrRotating, r.Rotation.Key, r.Rotation.Stage)
	}
	k, err := NewKey(r.NextName(), DefaultProvider)
	if err != nil {
		return nil, err
	}
	keys := append([]Key{r.Keys[0], k}, r.Keys[1:]...)
	return &Keyring{Keys: keys, Rotation: &Rotation{Key: k.Name, Stage: StageAdd, Started: now.UTC()}}, nil
}

// Next is the ring once the work of its stage is confirmed: the next stage
// (promote puts the new key first), or, after the drop, the new key alone
// and no rotation. Save it before the next stage's work starts.
func (r *Keyring) Next() (*Keyring, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Rotation == nil {
		return nil, errors.New("no key rotation is in progress")
	}
	c := r.Clone()
	switch r.Rotation.Stage {
	case StageAdd:
		i := slices.IndexFunc(c.Keys, func(k Key) bool { return k.Name == r.Rotation.Key })
		k := c.Keys[i]
		c.Keys = append([]Key{k}, slices.Delete(c.Keys, i, i+1)...)
		c.Rotation.Stage = StagePromote
	case StagePromote:
		c.Rotation.Stage = StageRewrite
	case StageRewrite:
		c.Rotation.Stage = StageDrop
	case StageDrop:
		c = r.Serving()
	}
	return c, nil
}

// Hash is how kube-apiserver names a configuration it loaded (the hash
// label of apiserver_encryption_config_controller_last_config_info):
// sha256:<hex> of the file's bytes. It is derived from the keys: compare
// it, never log it.
func Hash(config []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(config)) }

// StagePlan is one stage of a rotation as a plan shows it.
type StagePlan struct {
	Number int   `json:"number"`
	Stage  Stage `json:"stage"`
	// Status is "done", "next" (the stage a run starts or resumes at) or
	// "pending".
	Status string `json:"status"`
	// Keys are the keys of the configuration the stage writes, in order
	// (identity follows); empty for the rewrite.
	Keys []string `json:"keys,omitempty"`
	// Does says what the stage does.
	Does string `json:"does"`
}

// Stage statuses.
const (
	StatusDone    = "done"
	StatusNext    = "next"
	StatusPending = "pending"
)

// PlanRotation lists the stages of the rotation r is in, or of the one
// that would begin (its new key named r.NextName()), with what each does
// and writes. resources are the resources rewritten ("Secrets").
func PlanRotation(r *Keyring, resources []string) ([]StagePlan, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	ring, at := r.Clone(), StageAdd
	if r.Rotation == nil {
		// The plan of a new rotation, with a placeholder key under its
		// name (never saved).
		n := Key{Name: r.NextName(), Provider: DefaultProvider, Secret: base64.StdEncoding.EncodeToString(make([]byte, KeySize))}
		ring = &Keyring{Keys: append([]Key{r.Keys[0], n}, r.Keys[1:]...), Rotation: &Rotation{Key: n.Name, Stage: StageAdd}}
	} else {
		at = r.Rotation.Stage
	}
	newKey, _ := ring.Key(ring.Rotation.Key)
	old := strings.Join(ring.Retiring(), ", ")
	what := strings.Join(resources, " and ")
	// The stages before at are done: rebuild the ring of each stage from
	// the add stage's.
	add := ring.Clone()
	if at != StageAdd {
		i := slices.IndexFunc(add.Keys, func(k Key) bool { return k.Name == newKey.Name })
		rest := slices.Delete(slices.Clone(add.Keys), i, i+1)
		add.Keys = append([]Key{rest[0], newKey}, rest[1:]...)
		add.Rotation.Stage = StageAdd
	}
	var out []StagePlan
	cur := add
	for _, st := range Stages() {
		p := StagePlan{Number: st.Number(), Stage: st, Status: StatusPending}
		switch {
		case st.Number() < at.Number():
			p.Status = StatusDone
		case st == at:
			p.Status = StatusNext
		}
		if st.Configures() {
			p.Keys = cur.Serving().Names()
		}
		switch st {
		case StageAdd:
			p.Does = fmt.Sprintf("add %s as the second key on every control-plane server (each can then read it); wait until every kube-apiserver loaded it", newKey.Name)
		case StagePromote:
			p.Does = fmt.Sprintf("make %s the first key on every control-plane server (every write uses it); wait until every kube-apiserver loaded it", newKey.Name)
		case StageRewrite:
			p.Does = fmt.Sprintf("rewrite every object of %s through the API, unchanged; read etcd to check each value starts with %s", what, newKey.Prefix())
		case StageDrop:
			p.Does = fmt.Sprintf("drop %s from every control-plane server, wait until every kube-apiserver loaded that, then from the state", old)
		}
		out = append(out, p)
		if st != StageDrop {
			next, err := cur.Next()
			if err != nil {
				return nil, err
			}
			cur = next
		}
	}
	return out, nil
}

// Cluster is what a rotation reads and changes: the control-plane servers'
// configurations, and the objects through the API and in etcd.
type Cluster interface {
	// Observe reads every control-plane server's EncryptionConfiguration
	// (nil: it has none), by server.
	Observe(ctx context.Context) (map[string]*HostConfig, error)
	// Configure writes config (the EncryptionConfiguration holding keys,
	// in order) to every control-plane server and returns once every
	// kube-apiserver loaded it (Hash).
	Configure(ctx context.Context, keys []string, config []byte) error
	// Rewrite rewrites every object of resources through the API, then
	// checks in etcd that every value starts with key's Prefix (rewriting
	// the ones that do not, once); it fails naming the objects that still
	// do not. all false skips the rewrite of every object: only the check
	// (and the rewrite of what it finds) runs.
	Rewrite(ctx context.Context, resources []string, key Key, all bool) (RewriteReport, error)
}

// RewriteReport is what Cluster.Rewrite did.
type RewriteReport struct {
	// Rewritten objects through the API (the rewrite and the ones the
	// check found).
	Rewritten int `json:"rewritten"`
	// Checked values in etcd, all with the new key's prefix.
	Checked int `json:"checked"`
}

// RotateOptions configure Rotate.
type RotateOptions struct {
	Store *pki.Store
	// Resources are the encrypted resources (Secrets; ConfigMaps too when
	// the servers encrypt them).
	Resources []string
	Cluster   Cluster
	Logger    *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnStage, when set, is called as each stage starts and ends (err nil
	// at the start).
	OnStage func(s Stage, done bool, err error)
}

// RotateResult is what Rotate did.
type RotateResult struct {
	// From are the keys before the run; To are the keys after it.
	From []string `json:"from"`
	To   []string `json:"to"`
	// Key is the new key.
	Key string `json:"key"`
	// Resumed says a rotation in progress was resumed (at ResumedAt).
	Resumed   bool  `json:"resumed"`
	ResumedAt Stage `json:"resumedAt,omitempty"`
	// Ran are the stages this run completed.
	Ran []Stage `json:"ran"`
	// Stopped is the stage the run stopped at ("" when the rotation is
	// done).
	Stopped Stage         `json:"stopped,omitempty"`
	Rewrite RewriteReport `json:"rewrite"`
}

// ErrNoKeyring is wrapped when the store holds no keyring: no apply ever
// ran (or the state is another cluster's).
var ErrNoKeyring = errors.New("the state holds no Secrets encryption keys")

// CheckServers checks the servers' configurations against the state's
// ring before a rotation begins or resumes: every server has one (an
// apply wrote it), and every key a server holds is in the ring (else its
// Secrets could become unreadable). It returns the resources any server
// encrypts.
func CheckServers(r *Keyring, onHosts map[string]*HostConfig, where string) ([]string, error) {
	var hosts []string
	for h := range onHosts {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	var missing, bad []string
	var resources []string
	for _, h := range hosts {
		c := onHosts[h]
		if c == nil || c.Keyring == nil {
			missing = append(missing, h)
			continue
		}
		resources = append(resources, c.Resources...)
		for _, k := range c.Keyring.Keys {
			if !r.has(k) {
				bad = append(bad, fmt.Sprintf("%s holds %s", h, k))
			}
		}
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%s %s no encryption configuration with keys: run tricenter apply first",
			strings.Join(missing, ", "), plural(len(missing), "has", "have")))
	}
	if len(bad) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s; the state (%s) has %s. Nothing was changed: run tricenter apply first "+
			"(it refuses too when the state is not the one that installed these keys: restore that state)",
			ErrKeyMismatch, strings.Join(bad, "; "), where, r))
	}
	slices.Sort(resources)
	return slices.Compact(resources), errors.Join(errs...)
}

// OrderResources is resources without repeats in the order the control
// plane renders them: Secrets, then ConfigMaps (the same bytes as an
// apply writes).
func OrderResources(resources []string) []string {
	var out []string
	for _, r := range []string{Secrets, ConfigMaps} {
		if slices.Contains(resources, r) {
			out = append(out, r)
		}
	}
	for _, r := range resources {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Rotate runs a key rotation, or resumes the one the store records, to
// its end (see Stage). Each stage is recorded in the store before its work
// and the next only after it: a run that fails or stops is resumed by
// calling Rotate again. Logs and errors name keys, never their secrets.
func Rotate(ctx context.Context, o RotateOptions) (*RotateResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	onStage := o.OnStage
	if onStage == nil {
		onStage = func(Stage, bool, error) {}
	}
	where := Where(o.Store)
	ring, err := Load(o.Store)
	if err != nil {
		return nil, err
	}
	if ring == nil {
		return nil, fmt.Errorf("%w (%s): run tricenter apply first", ErrNoKeyring, where)
	}
	hosts, err := o.Cluster.Observe(ctx)
	if err != nil {
		return nil, err
	}
	onServers, err := CheckServers(ring, hosts, where)
	if err != nil {
		return nil, err
	}
	resources := OrderResources(append(append([]string{Secrets}, o.Resources...), onServers...))

	res := &RotateResult{From: ring.Names()}
	if ring.Rotation == nil {
		if ring, err = BeginRotation(ring, now()); err != nil {
			return res, err
		}
		// In the state before any server holds it.
		if err := Save(o.Store, ring); err != nil {
			return res, err
		}
		log.Info("Rotating the Secrets encryption key", "from", strings.Join(res.From, ", "), "to", ring.Rotation.Key, "state", where)
	} else {
		res.Resumed, res.ResumedAt = true, ring.Rotation.Stage
		log.Info("Resuming the Secrets encryption key rotation", "to", ring.Rotation.Key, "stage", ring.Rotation.Stage,
			"started", ring.Rotation.Started.Format(time.RFC3339), "state", where)
	}
	res.Key = ring.Rotation.Key
	newKey, _ := ring.Key(ring.Rotation.Key)
	for ring.Rotation != nil {
		st := ring.Rotation.Stage
		res.Stopped = st
		onStage(st, false, nil)
		var err error
		switch st {
		case StageAdd, StagePromote, StageDrop:
			if st == StageDrop {
				// Nothing may be left under the old keys: check etcd
				// again (a stopped run may resume here long after the
				// rewrite).
				var rep RewriteReport
				rep, err = o.Cluster.Rewrite(ctx, resources, newKey, false)
				res.Rewrite.Rewritten += rep.Rewritten
				res.Rewrite.Checked = rep.Checked
				if err != nil {
					break
				}
			}
			var cfg []byte
			if cfg, err = Render(ring, resources); err != nil {
				break
			}
			keys := ring.Serving().Names()
			log.Info("Writing the encryption configuration to every control-plane server", "stage", st, "keys", strings.Join(keys, ", "))
			err = o.Cluster.Configure(ctx, keys, cfg)
		case StageRewrite:
			log.Info("Rewriting every object so it is stored with the new key", "resources", strings.Join(resources, ", "), "key", newKey.Name)
			var rep RewriteReport
			rep, err = o.Cluster.Rewrite(ctx, resources, newKey, true)
			res.Rewrite.Rewritten += rep.Rewritten
			res.Rewrite.Checked = rep.Checked
		}
		onStage(st, true, err)
		if err != nil {
			return res, fmt.Errorf("stage %d (%s) of the rotation to %s: %w; every server still reads every Secret: "+
				"run tricenter secrets rotate-key again to resume at this stage", st.Number(), st, newKey.Name, err)
		}
		next, err := ring.Next()
		if err != nil {
			return res, err
		}
		if err := Save(o.Store, next); err != nil {
			return res, err
		}
		res.Ran = append(res.Ran, st)
		ring = next
		if ring.Rotation != nil {
			log.Info("Rotation stage done", "stage", st, "next", ring.Rotation.Stage)
		}
	}
	res.Stopped = ""
	res.To = ring.Names()
	log.Info("Secrets encryption key rotated", "key", res.Key, "dropped", strings.Join(retired(res.From, res.Key), ", "), "state", where)
	return res, nil
}

// retired are the names in from other than key.
func retired(from []string, key string) []string {
	var out []string
	for _, n := range from {
		if n != key {
			out = append(out, n)
		}
	}
	return out
}
