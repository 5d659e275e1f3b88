package encryption

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// errCrash stands for the run stopping (a lost connection, Ctrl-C, kill -9).
var errCrash = errors.New("fake crash")

// fakeCluster is a fake of the control-plane servers, the API and etcd for
// the rotation's logic, not a kube-apiserver: each server uses the keys of
// the configuration last written to it (written and loaded at once, one
// server after the other); each object is stored under the key that
// encrypted it ("" for identity: written before encryption). Before every
// step of the rotation's work, traffic runs: every server writes a new
// object with its first key, and every server must be able to read every
// object (else a violation is recorded). crashAt stops the run at that
// step.
type fakeCluster struct {
	servers []string
	conf    map[string][]Key
	objects map[string]string
	// stuck objects are not rewritten (an update that keeps failing).
	stuck map[string]bool
	// resources are what the servers' configurations say they encrypt.
	resources []string

	crashAt, steps, writes, rr int
	violations                 []string
	configs                    [][]string
}

func newFakeCluster(k1 Key) *fakeCluster {
	f := &fakeCluster{servers: []string{"cp1", "cp2", "cp3"}, conf: map[string][]Key{}, objects: map[string]string{},
		stuck: map[string]bool{}, resources: []string{Secrets}}
	for _, s := range f.servers {
		f.conf[s] = []Key{k1}
	}
	for i := range 5 {
		f.objects[fmt.Sprintf("secrets/default/app-%d", i)] = k1.Name
	}
	// Written before encryption was turned on.
	f.objects["secrets/kube-system/old-0"] = ""
	f.objects["secrets/kube-system/old-1"] = ""
	return f
}

func (f *fakeCluster) step() error {
	f.steps++
	f.traffic()
	if f.crashAt > 0 && f.steps == f.crashAt {
		return errCrash
	}
	return nil
}

// traffic: a write through every server, then every server reads every
// object.
func (f *fakeCluster) traffic() {
	for _, s := range f.servers {
		f.writes++
		f.objects[fmt.Sprintf("secrets/default/bg-%d", f.writes)] = f.conf[s][0].Name
	}
	f.check()
}

func (f *fakeCluster) check() {
	for obj, k := range f.objects {
		if k == "" {
			continue // identity is last in every configuration
		}
		for _, s := range f.servers {
			if !slices.ContainsFunc(f.conf[s], func(x Key) bool { return x.Name == k }) {
				f.violations = append(f.violations, fmt.Sprintf("%s cannot read %s (stored with %s, it holds %v)", s, obj, k, names(f.conf[s])))
			}
		}
	}
}

func names(ks []Key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Name
	}
	return out
}

func (f *fakeCluster) Observe(context.Context) (map[string]*HostConfig, error) {
	out := map[string]*HostConfig{}
	for _, s := range f.servers {
		out[s] = &HostConfig{Keyring: &Keyring{Keys: slices.Clone(f.conf[s])}, Resources: slices.Clone(f.resources)}
	}
	return out, nil
}

func (f *fakeCluster) Configure(_ context.Context, keys []string, config []byte) error {
	hc, err := Parse(config)
	if err != nil {
		return err
	}
	if !slices.Equal(hc.Keyring.Names(), keys) {
		return fmt.Errorf("configuration holds %v, told %v", hc.Keyring.Names(), keys)
	}
	f.configs = append(f.configs, keys)
	for _, s := range f.servers {
		if err := f.step(); err != nil {
			return err
		}
		f.conf[s] = slices.Clone(hc.Keyring.Keys)
	}
	f.check()
	// Waiting for every kube-apiserver to load it.
	return f.step()
}

// apply is what tricenter apply does in between: the state's
// configuration on every server, one after the other.
func (f *fakeCluster) apply(t *testing.T, s *pki.Store) {
	t.Helper()
	ring, err := Load(s)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Render(ring, []string{Secrets})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := Parse(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range f.servers {
		f.conf[srv] = slices.Clone(hc.Keyring.Keys)
		f.traffic()
	}
}

func (f *fakeCluster) Rewrite(_ context.Context, _ []string, key Key, all bool) (RewriteReport, error) {
	var rep RewriteReport
	rewrite := func(obj string) error {
		if err := f.step(); err != nil {
			return err
		}
		if f.stuck[obj] {
			return nil
		}
		// Through the API: whichever server the VIP leads to.
		f.rr++
		f.objects[obj] = f.conf[f.servers[f.rr%len(f.servers)]][0].Name
		rep.Rewritten++
		return nil
	}
	if all {
		for _, obj := range slices.Sorted(maps.Keys(f.objects)) {
			if err := rewrite(obj); err != nil {
				return rep, err
			}
		}
	}
	stale := func() []string {
		var out []string
		for _, obj := range slices.Sorted(maps.Keys(f.objects)) {
			if f.objects[obj] != key.Name {
				out = append(out, obj)
			}
		}
		return out
	}
	for _, obj := range stale() {
		if err := rewrite(obj); err != nil {
			return rep, err
		}
	}
	if left := stale(); len(left) > 0 {
		return rep, fmt.Errorf("%d values in etcd do not start with %s: %s", len(left), key.Prefix(), strings.Join(left, ", "))
	}
	rep.Checked = len(f.objects)
	return rep, f.step()
}

func mapsKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func storeWith(t *testing.T, keys ...Key) *pki.Store {
	t.Helper()
	s := pki.NewMemStore()
	if err := Save(s, &Keyring{Keys: keys}); err != nil {
		t.Fatal(err)
	}
	return s
}

var fixedNow = func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }

// TestRotateConfiguresInTheDocumentedOrder: a rotation writes the new key
// second, then first, rewrites everything, then drops the old key; the
// state ends with the new key alone and every object under it.
func TestRotateConfiguresInTheDocumentedOrder(t *testing.T) {
	k1 := fakeKey("key-1", Secretbox, '1')
	s := storeWith(t, k1)
	f := newFakeCluster(k1)
	var seen []string
	res, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: f, Now: fixedNow,
		OnStage: func(st Stage, done bool, err error) { seen = append(seen, fmt.Sprintf("%s %v %v", st, done, err)) }})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"key-1", "key-2"}, {"key-2", "key-1"}, {"key-2"}}
	if fmt.Sprint(f.configs) != fmt.Sprint(want) {
		t.Errorf("configurations written %v, want %v", f.configs, want)
	}
	if len(f.violations) > 0 {
		t.Fatalf("a server could not read an object:\n%s", strings.Join(f.violations, "\n"))
	}
	if !slices.Equal(res.From, []string{"key-1"}) || !slices.Equal(res.To, []string{"key-2"}) || res.Key != "key-2" || res.Resumed ||
		!slices.Equal(res.Ran, Stages()) || res.Stopped != "" {
		t.Errorf("result %+v", res)
	}
	if res.Rewrite.Rewritten < 7 || res.Rewrite.Checked < 7 || res.Rewrite.Checked > len(f.objects) {
		t.Errorf("rewrite report %+v for %d objects", res.Rewrite, len(f.objects))
	}
	if fmt.Sprint(seen) != "[add false <nil> add true <nil> promote false <nil> promote true <nil> rewrite false <nil> rewrite true <nil> drop false <nil> drop true <nil>]" {
		t.Errorf("stage callbacks %v", seen)
	}
	ring, err := Load(s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ring.Names(), []string{"key-2"}) || ring.Rotation != nil || ring.Keys[0].Secret == k1.Secret {
		t.Fatalf("state after the rotation: %v (rotation %+v)", ring, ring.Rotation)
	}
	for obj, k := range f.objects {
		if k != "key-2" {
			t.Errorf("%s is stored with %q after the rotation", obj, k)
		}
	}
	for _, srv := range f.servers {
		if !slices.Equal(names(f.conf[srv]), []string{"key-2"}) {
			t.Errorf("%s holds %v after the rotation", srv, names(f.conf[srv]))
		}
	}
	// A second rotation goes to key-3.
	f.configs = nil
	if res, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: f}); err != nil || res.Key != "key-3" {
		t.Fatalf("second rotation: %v, %+v", err, res)
	}
	if fmt.Sprint(f.configs) != "[[key-2 key-3] [key-3 key-2] [key-3]]" {
		t.Errorf("second rotation wrote %v", f.configs)
	}
}

// TestRotateResumesAfterACrashAtEveryPoint stops the run at every step of
// its work (before and after each server's configuration, each object's
// rewrite, each wait), then checks: no server ever failed to read an
// object; the state holds every key any server holds (an apply would not
// refuse) and still holds the old key while the rewrite is not verified;
// the next run resumes at the recorded stage and finishes — also after an
// apply ran in between.
func TestRotateResumesAfterACrashAtEveryPoint(t *testing.T) {
	k1 := fakeKey("key-1", Secretbox, '1')
	probe := newFakeCluster(k1)
	if _, err := Rotate(context.Background(), RotateOptions{Store: storeWith(t, k1), Cluster: probe}); err != nil {
		t.Fatal(err)
	}
	total := probe.steps
	if total < 20 {
		t.Fatalf("a rotation took only %d steps", total)
	}
	for crash := 1; crash <= total; crash++ {
		for _, applyBetween := range []bool{false, true} {
			t.Run(fmt.Sprintf("crash at %d of %d, apply between %v", crash, total, applyBetween), func(t *testing.T) {
				s := storeWith(t, k1)
				f := newFakeCluster(k1)
				initial := mapsKeys(f.objects)
				f.crashAt = crash
				_, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: f})
				if !errors.Is(err, errCrash) || !strings.Contains(err.Error(), "run tricenter secrets rotate-key again to resume") {
					t.Fatalf("crashed run: %v", err)
				}
				ring, err := Load(s)
				if err != nil {
					t.Fatal(err)
				}
				if ring.Rotation == nil {
					t.Fatalf("the state records no rotation after a crash: %v", ring)
				}
				stage := ring.Rotation.Stage
				onHosts := map[string]*Keyring{}
				for _, srv := range f.servers {
					onHosts[srv] = &Keyring{Keys: slices.Clone(f.conf[srv])}
					if stage.Number() <= StageRewrite.Number() && !slices.ContainsFunc(f.conf[srv], func(k Key) bool { return k.Name == "key-1" }) {
						t.Errorf("%s dropped key-1 at stage %s, before the rewrite was verified", srv, stage)
					}
				}
				if _, out, err := Ensure(s, onHosts); err != nil || out != Kept {
					t.Fatalf("an apply after the crash at stage %s would refuse: %v", stage, err)
				}
				if applyBetween {
					f.apply(t, s)
				}
				f.crashAt = 0
				res, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: f})
				if err != nil {
					t.Fatalf("resumed run: %v", err)
				}
				if !res.Resumed || res.ResumedAt != stage || res.Ran[0] != stage {
					t.Errorf("resumed at %q ran %v, the state recorded %s", res.ResumedAt, res.Ran, stage)
				}
				if len(f.violations) > 0 {
					t.Fatalf("a server could not read an object:\n%s", strings.Join(f.violations, "\n"))
				}
				ring, err = Load(s)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ring.Names(), []string{"key-2"}) || ring.Rotation != nil {
					t.Fatalf("state after the resumed rotation: %v", ring)
				}
				for _, obj := range initial {
					if f.objects[obj] != "key-2" {
						t.Errorf("%s is stored with %q after the rotation", obj, f.objects[obj])
					}
				}
				for _, srv := range f.servers {
					if !slices.Equal(names(f.conf[srv]), []string{"key-2"}) {
						t.Errorf("%s holds %v after the rotation", srv, names(f.conf[srv]))
					}
				}
			})
		}
	}
}

// TestRotateKeepsTheOldKeyUntilTheRewriteIsVerified: an object the rewrite
// cannot move stops the rotation at the rewrite stage, with the old key
// still on every server and in the state; once it moves, the run resumes.
func TestRotateKeepsTheOldKeyUntilTheRewriteIsVerified(t *testing.T) {
	k1 := fakeKey("key-1", Secretbox, '1')
	s := storeWith(t, k1)
	f := newFakeCluster(k1)
	f.stuck["secrets/default/app-3"] = true
	_, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: f})
	if err == nil || !strings.Contains(err.Error(), "stage 3 (rewrite) of the rotation to key-2") ||
		!strings.Contains(err.Error(), "do not start with k8s:enc:secretbox:v1:key-2:: secrets/default/app-3") {
		t.Fatalf("err = %v", err)
	}
	ring, _ := Load(s)
	if ring.Rotation == nil || ring.Rotation.Stage != StageRewrite || !slices.Equal(ring.Names(), []string{"key-2", "key-1"}) {
		t.Fatalf("state after the failed rewrite: %v %+v", ring, ring.Rotation)
	}
	for _, srv := range f.servers {
		if !slices.Equal(names(f.conf[srv]), []string{"key-2", "key-1"}) {
			t.Errorf("%s holds %v", srv, names(f.conf[srv]))
		}
	}
	delete(f.stuck, "secrets/default/app-3")
	res, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: f})
	if err != nil || !slices.Equal(res.Ran, []Stage{StageRewrite, StageDrop}) {
		t.Fatalf("resumed: %v %+v", err, res)
	}
	if len(f.violations) > 0 {
		t.Fatal(strings.Join(f.violations, "\n"))
	}
}

// TestRotateRefuses: no keyring, a server without a configuration, a
// server holding a key the state lacks: nothing is written.
func TestRotateRefuses(t *testing.T) {
	k1, other := fakeKey("key-1", Secretbox, '1'), fakeKey("key-7", Secretbox, '7')
	_, err := Rotate(context.Background(), RotateOptions{Store: pki.NewMemStore(), Cluster: newFakeCluster(k1)})
	if !errors.Is(err, ErrNoKeyring) || !strings.Contains(err.Error(), "run tricenter apply first") {
		t.Errorf("no keyring: %v", err)
	}
	for _, tc := range []struct {
		name string
		set  func(f *fakeCluster)
		want string
		is   error
	}{
		{"no configuration", func(f *fakeCluster) { f.conf["cp2"] = nil }, "cp2 has no encryption configuration with keys: run tricenter apply first", nil},
		{"unknown key", func(f *fakeCluster) { f.conf["cp3"] = []Key{k1, other} }, "cp3 holds key-7 (secretbox)", ErrKeyMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := storeWith(t, k1)
			f := newFakeCluster(k1)
			tc.set(f)
			_, err := Rotate(context.Background(), RotateOptions{Store: s, Cluster: &observeNil{f}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), other.Secret) || strings.Contains(err.Error(), k1.Secret) {
				t.Fatalf("the error quotes a secret: %v", err)
			}
			if ring, _ := Load(s); ring.Rotation != nil || len(ring.Keys) != 1 || len(f.configs) > 0 || f.steps > 0 {
				t.Fatalf("a refused rotation changed something: %v, %d configurations, %d steps", ring, len(f.configs), f.steps)
			}
		})
	}
}

// observeNil reports a server without keys as having no configuration.
type observeNil struct{ *fakeCluster }

func (o *observeNil) Observe(ctx context.Context) (map[string]*HostConfig, error) {
	m, err := o.fakeCluster.Observe(ctx)
	for s, c := range m {
		if len(c.Keyring.Keys) == 0 {
			m[s] = nil
		}
	}
	return m, err
}

// TestRotateKeepsConfigMapsEncrypted: servers that encrypt ConfigMaps get
// configurations for both, in the control plane's order.
func TestRotateKeepsConfigMapsEncrypted(t *testing.T) {
	k1 := fakeKey("key-1", Secretbox, '1')
	f := newFakeCluster(k1)
	f.resources = []string{ConfigMaps, Secrets}
	rec := &recordResources{fakeCluster: f}
	if _, err := Rotate(context.Background(), RotateOptions{Store: storeWith(t, k1), Cluster: rec}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rec.configured) != "[[secrets configmaps] [secrets configmaps] [secrets configmaps]]" ||
		fmt.Sprint(rec.rewritten) != "[[secrets configmaps] [secrets configmaps]]" {
		t.Errorf("configured %v, rewritten %v", rec.configured, rec.rewritten)
	}
}

type recordResources struct {
	*fakeCluster
	configured, rewritten [][]string
}

func (r *recordResources) Configure(ctx context.Context, keys []string, config []byte) error {
	// Parse sorts the resources; the file's order is the rendered one.
	var c struct {
		Resources []struct {
			Resources []string `json:"resources"`
		} `json:"resources"`
	}
	if err := yaml.Unmarshal(config, &c); err != nil || len(c.Resources) != 1 {
		return fmt.Errorf("configuration (%d resource entries): %w", len(c.Resources), err)
	}
	r.configured = append(r.configured, c.Resources[0].Resources)
	return r.fakeCluster.Configure(ctx, keys, config)
}

func (r *recordResources) Rewrite(ctx context.Context, resources []string, key Key, all bool) (RewriteReport, error) {
	r.rewritten = append(r.rewritten, slices.Clone(resources))
	return r.fakeCluster.Rewrite(ctx, resources, key, all)
}

// TestRenderPerStage: the configuration of every stage, with fixed keys
// (goldens): the new key second, then first with the old one kept through
// the rewrite, then alone; identity always last.
func TestRenderPerStage(t *testing.T) {
	k1, k2 := fakeKey("key-1", Secretbox, '1'), fakeKey("key-2", Secretbox, '2')
	for _, tc := range []struct {
		ring  *Keyring
		stage Stage
		want  []string
	}{
		{&Keyring{Keys: []Key{k1, k2}, Rotation: &Rotation{Key: "key-2", Stage: StageAdd}}, StageAdd, []string{"key-1", "key-2"}},
		{&Keyring{Keys: []Key{k2, k1}, Rotation: &Rotation{Key: "key-2", Stage: StagePromote}}, StagePromote, []string{"key-2", "key-1"}},
		{&Keyring{Keys: []Key{k2, k1}, Rotation: &Rotation{Key: "key-2", Stage: StageRewrite}}, StageRewrite, []string{"key-2", "key-1"}},
		{&Keyring{Keys: []Key{k2, k1}, Rotation: &Rotation{Key: "key-2", Stage: StageDrop}}, StageDrop, []string{"key-2"}},
	} {
		b, err := Render(tc.ring, []string{Secrets})
		if err != nil {
			t.Fatalf("%s: %v", tc.stage, err)
		}
		golden(t, "encryption-config-stage-"+string(tc.stage)+".yaml", b)
		hc, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hc.Keyring.Names(), tc.want) {
			t.Errorf("%s renders %v, want %v", tc.stage, hc.Keyring.Names(), tc.want)
		}
		if strings.LastIndex(string(b), "identity: {}") < strings.LastIndex(string(b), "secret:") {
			t.Errorf("%s: identity is not last:\n%s", tc.stage, b)
		}
		if strings.Contains(string(b), "rotation") || strings.Contains(string(b), "stage") {
			t.Errorf("%s: the rotation record leaked into the configuration:\n%s", tc.stage, b)
		}
	}
}

// TestRotationStateMachine: BeginRotation and Next through every stage,
// what each keeps in the state, and the record surviving Save and Load.
func TestRotationStateMachine(t *testing.T) {
	k1, k0 := fakeKey("key-1", Secretbox, '1'), fakeKey("key-3", AESCBC, 'a')
	s := storeWith(t, k1, k0)
	r, _ := Load(s)
	if r.Rotation != nil {
		t.Fatal("a keyring without rotation loads with one")
	}
	r, err := BeginRotation(r, fixedNow())
	if err != nil {
		t.Fatal(err)
	}
	if r.Rotation.Key != "key-4" || r.Rotation.Stage != StageAdd || !r.Rotation.Started.Equal(fixedNow()) ||
		!slices.Equal(r.Names(), []string{"key-1", "key-4", "key-3"}) || r.Keys[1].Provider != DefaultProvider {
		t.Fatalf("begun: %v %+v", r, r.Rotation)
	}
	if _, err := BeginRotation(r, fixedNow()); !errors.Is(err, ErrRotating) {
		t.Errorf("a second BeginRotation: %v", err)
	}
	want := []struct {
		stage   Stage
		keys    []string
		serving []string
	}{
		{StagePromote, []string{"key-4", "key-1", "key-3"}, []string{"key-4", "key-1", "key-3"}},
		{StageRewrite, []string{"key-4", "key-1", "key-3"}, []string{"key-4", "key-1", "key-3"}},
		{StageDrop, []string{"key-4", "key-1", "key-3"}, []string{"key-4"}},
		{"", []string{"key-4"}, []string{"key-4"}},
	}
	for _, w := range want {
		// Every stage survives the store.
		if err := Save(s, r); err != nil {
			t.Fatal(err)
		}
		loaded, err := Load(s)
		if err != nil || loaded.Rotation == nil || loaded.Rotation.Key != r.Rotation.Key || loaded.Rotation.Stage != r.Rotation.Stage ||
			!loaded.Rotation.Started.Equal(r.Rotation.Started) || !slices.Equal(loaded.Names(), r.Names()) {
			t.Fatalf("saved %v %+v, loaded %v (%v)", r, r.Rotation, loaded, err)
		}
		if !slices.Equal(r.Retiring(), []string{"key-1", "key-3"}) {
			t.Errorf("retiring %v", r.Retiring())
		}
		r, err = r.Next()
		if err != nil {
			t.Fatal(err)
		}
		got := Stage("")
		if r.Rotation != nil {
			got = r.Rotation.Stage
		}
		if got != w.stage || !slices.Equal(r.Names(), w.keys) || !slices.Equal(r.Serving().Names(), w.serving) {
			t.Fatalf("after Next: stage %q keys %v serving %v, want %q %v %v", got, r.Names(), r.Serving().Names(), w.stage, w.keys, w.serving)
		}
	}
	if _, err := r.Next(); err == nil {
		t.Error("Next without a rotation")
	}
	// A finished rotation saves as a plain keyring, readable by a release
	// that knows no rotation.
	if err := Save(s, r); err != nil {
		t.Fatal(err)
	}
	b, _ := s.Files.ReadFile(StoreDir + "/" + KeyringFile)
	if strings.Contains(string(b), "rotation") {
		t.Errorf("a finished rotation left its record:\n%s", b)
	}
	var plain struct {
		Keys []Key `json:"keys"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&plain); err != nil {
		t.Errorf("the keyring is not the format before rotations: %v", err)
	}
}

// TestRotationValidate: a record that does not fit its ring is refused
// (a damaged state is not resumed).
func TestRotationValidate(t *testing.T) {
	k1, k2 := fakeKey("key-1", Secretbox, '1'), fakeKey("key-2", Secretbox, '2')
	for _, tc := range []struct {
		name string
		ring *Keyring
		want string
	}{
		{"unknown stage", &Keyring{Keys: []Key{k1, k2}, Rotation: &Rotation{Key: "key-2", Stage: "later"}}, `stage "later" is none of add, promote, rewrite, drop`},
		{"key not in the ring", &Keyring{Keys: []Key{k1, k2}, Rotation: &Rotation{Key: "key-9", Stage: StageAdd}}, "new key key-9 is not in the keyring"},
		{"alone", &Keyring{Keys: []Key{k2}, Rotation: &Rotation{Key: "key-2", Stage: StageDrop}}, "no older key"},
		{"first while added", &Keyring{Keys: []Key{k2, k1}, Rotation: &Rotation{Key: "key-2", Stage: StageAdd}}, "first while it is only being added"},
		{"second once promoted", &Keyring{Keys: []Key{k1, k2}, Rotation: &Rotation{Key: "key-2", Stage: StageRewrite}}, "not first at stage rewrite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ring.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			s := pki.NewMemStore()
			if err := Save(s, tc.ring); err == nil {
				t.Fatal("saved")
			}
		})
	}
}

// TestPlanRotation: the stages of a new rotation and of one in progress,
// with their statuses and configurations.
func TestPlanRotation(t *testing.T) {
	k1, k2 := fakeKey("key-1", Secretbox, '1'), fakeKey("key-2", Secretbox, '2')
	render := func(ps []StagePlan) string {
		var b strings.Builder
		for _, p := range ps {
			fmt.Fprintf(&b, "%d %s %s %v\n", p.Number, p.Stage, p.Status, p.Keys)
		}
		return b.String()
	}
	ps, err := PlanRotation(&Keyring{Keys: []Key{k1}}, []string{Secrets})
	if err != nil {
		t.Fatal(err)
	}
	if got := render(ps); got != "1 add next [key-1 key-2]\n2 promote pending [key-2 key-1]\n3 rewrite pending []\n4 drop pending [key-2]\n" {
		t.Errorf("new rotation:\n%s", got)
	}
	for _, want := range []string{"add key-2 as the second key", "make key-2 the first key", "rewrite every object of secrets", "k8s:enc:secretbox:v1:key-2:", "drop key-1 from every control-plane server"} {
		if !strings.Contains(fmt.Sprint(ps), want) {
			t.Errorf("the plan does not say %q: %v", want, ps)
		}
	}
	ps, err = PlanRotation(&Keyring{Keys: []Key{k2, k1}, Rotation: &Rotation{Key: "key-2", Stage: StageRewrite}}, []string{Secrets})
	if err != nil {
		t.Fatal(err)
	}
	if got := render(ps); got != "1 add done [key-1 key-2]\n2 promote done [key-2 key-1]\n3 rewrite next []\n4 drop pending [key-2]\n" {
		t.Errorf("at the rewrite:\n%s", got)
	}
	ps, _ = PlanRotation(&Keyring{Keys: []Key{k1, k2}, Rotation: &Rotation{Key: "key-2", Stage: StageAdd}}, []string{Secrets})
	if got := render(ps); !strings.HasPrefix(got, "1 add next [key-1 key-2]\n2 promote pending") {
		t.Errorf("at the add:\n%s", got)
	}
	for _, p := range ps {
		if strings.Contains(p.Does, k1.Secret) || strings.Contains(p.Does, k2.Secret) {
			t.Fatal("the plan quotes a secret")
		}
	}
}

func TestKeyPrefixAndHash(t *testing.T) {
	if got := fakeKey("key-2", Secretbox, '2').Prefix(); got != "k8s:enc:secretbox:v1:key-2:" {
		t.Errorf("Prefix = %q", got)
	}
	if got := fakeKey("key-1", AESCBC, '2').Prefix(); got != "k8s:enc:aescbc:v1:key-1:" {
		t.Errorf("Prefix = %q", got)
	}
	// sha256 of "abc", as kube-apiserver's computeEncryptionConfigHash.
	if got := Hash([]byte("abc")); got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("Hash = %s", got)
	}
}
