package installer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// DefaultReloadTimeout bounds the wait for every kube-apiserver to load a
// new encryption configuration. kube-apiserver looks at the file once a
// minute (--encryption-provider-config-automatic-reload) and retries a
// failed load with a growing backoff.
const DefaultReloadTimeout = 5 * time.Minute

// RotateKeyOptions configure PlanRotateKey and RotateKey.
type RotateKeyOptions struct {
	// LockTimeout is as Options.LockTimeout (RotateKey only).
	LockTimeout time.Duration
	// ReloadTimeout bounds each wait for every kube-apiserver to load the
	// configuration of a stage (default DefaultReloadTimeout).
	ReloadTimeout time.Duration
}

// ServerKeys is what a control-plane server holds.
type ServerKeys struct {
	Server string `json:"server"`
	// Keys are the keys of its encryption configuration, in order
	// (identity follows).
	Keys []string `json:"keys"`
	// Loaded says whether its kube-apiserver uses that file: "yes", "no"
	// (it still uses another one: a reload is due or failed), or why it
	// is not known.
	Loaded string `json:"loaded"`
	// Changes says the next stage writes another configuration there.
	Changes bool `json:"changes"`
}

// RotateKeyResult is what PlanRotateKey found or RotateKey did.
type RotateKeyResult struct {
	DryRun bool `json:"dryRun"`
	// Keyring is where the state keeps the keys.
	Keyring string `json:"keyring"`
	// Keys are the state's keys before the run, in order.
	Keys []string `json:"keys"`
	// Key is the new key (to be generated, for a plan of a new rotation).
	Key string `json:"key"`
	// InProgress says a rotation is recorded (started at Started): the run
	// resumes it at the stage marked "next".
	InProgress bool      `json:"inProgress"`
	Started    time.Time `json:"started,omitzero"`
	// Stages are the rotation's stages, with their status before the run
	// (a plan) or after it.
	Stages []encryption.StagePlan `json:"stages"`
	// Resources are the encrypted resources the rewrite covers; Objects
	// how many of each etcd holds (plans only).
	Resources []string       `json:"resources"`
	Objects   map[string]int `json:"objects,omitempty"`
	// Servers are the control-plane servers as observed before the run.
	Servers []ServerKeys `json:"servers"`
	// Rotation is what the run did (RotateKey only).
	Rotation *encryption.RotateResult `json:"rotation,omitempty"`
	Warnings []string                 `json:"warnings,omitempty"`
	Lock     string                   `json:"lock,omitempty"`
	Took     time.Duration            `json:"took"`
}

// PlanRotateKey shows what RotateKey would do: the state's keys, the
// rotation in progress if any, each control-plane server's keys (and
// whether its kube-apiserver uses them), the stages with the
// configuration each writes, and how many objects the rewrite covers. It
// changes nothing and takes no lock.
func (e *Engine) PlanRotateKey(ctx context.Context, o RotateKeyOptions) (*RotateKeyResult, error) {
	start := time.Now()
	res, ring, err := e.prepareRotation()
	if err != nil {
		return res, err
	}
	res.DryRun = true
	defer func() { res.Took = time.Since(start) }()
	m := e.ObserveManager()
	defer m.Close()
	rc := &rotationCluster{e: e, m: m, o: o}
	defer rc.close()
	hosts, err := rc.Observe(ctx)
	if err != nil {
		return res, err
	}
	onServers, err := encryption.CheckServers(ring, hosts, res.Keyring)
	if err != nil {
		return res, err
	}
	res.Resources = encryption.OrderResources(append([]string{encryption.Secrets}, onServers...))
	if res.Stages, err = encryption.PlanRotation(ring, res.Resources); err != nil {
		return res, err
	}
	// The configuration the next stage writes, when it is known: a new
	// rotation's key does not exist yet, so every server changes.
	var next []byte
	if ring.Rotation != nil && ring.Rotation.Stage.Configures() {
		if next, err = encryption.Render(ring, res.Resources); err != nil {
			return res, err
		}
	}
	loaded := rc.loadedHashes(ctx)
	for _, mb := range e.Placement().ControlPlane {
		sk := ServerKeys{Server: mb.Name, Changes: ring.Rotation == nil}
		if c := hosts[mb.Name]; c != nil && c.Keyring != nil {
			sk.Keys = c.Keyring.Names()
		}
		file := rc.fileHash[mb.Name]
		switch l := loaded[mb.Name]; {
		case l.err != nil:
			sk.Loaded = "unknown: " + l.err.Error()
		case l.hash == file:
			sk.Loaded = "yes"
		default:
			sk.Loaded = "no"
			res.Warnings = append(res.Warnings, fmt.Sprintf("kube-apiserver on %s does not use its encryption configuration file yet "+
				"(it reloads it within a minute of a change; if this lasts, see journalctl -u kube-apiserver there)", mb.Name))
		}
		if next != nil {
			sk.Changes = encryption.Hash(next) != file
		}
		res.Servers = append(res.Servers, sk)
	}
	p, err := e.EtcdPKI(false)
	if err != nil {
		return res, err
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	res.Objects = map[string]int{}
	for _, r := range res.Resources {
		cctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
		resp, err := cli.KV().Get(cctx, etcdResourcePrefix(r), clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			return res, fmt.Errorf("counting %s in etcd: %w", r, err)
		}
		res.Objects[r] = int(resp.Count)
	}
	return res, nil
}

// RotateKey rotates the key Secrets are encrypted with in etcd, with the
// API serving throughout (encryption.Rotate: the new key added second on
// every control-plane server, then first, every Secret rewritten and
// checked in etcd, the old key dropped), each kube-apiserver reloading
// its configuration by itself: nothing restarts. Each stage is recorded
// in the keyring in the state: a run that stops is resumed by running
// RotateKey again. It holds the engine's locks like Apply.
func (e *Engine) RotateKey(ctx context.Context, o RotateKeyOptions) (*RotateKeyResult, error) {
	start := time.Now()
	// Refused before any lock is taken: nothing to rotate.
	res, _, err := e.prepareRotation()
	if err != nil {
		return res, err
	}
	lockRes := &Result{}
	ctx, unlock, err := e.lockRun(ctx, Options{LockTimeout: o.LockTimeout}, lockRes)
	if err != nil {
		return res, err
	}
	defer unlock()
	// Read again under the lock: another run may have moved it on.
	if res, _, err = e.prepareRotation(); err != nil {
		return res, err
	}
	res.Lock = lockRes.Lock
	defer func() { res.Took = time.Since(start) }()
	m := e.Manager(false)
	defer m.Close()
	rc := &rotationCluster{e: e, m: m, o: o}
	defer rc.close()
	titles := map[encryption.Stage]string{}
	started := map[encryption.Stage]time.Time{}
	rot, err := encryption.Rotate(ctx, encryption.RotateOptions{Store: e.cfg.Store.PKI(), Cluster: rc, Logger: e.log, Now: e.cfg.Clock,
		OnStage: func(s encryption.Stage, done bool, err error) {
			if !done {
				titles[s] = fmt.Sprintf("rotate-key stage %d of %d: %s", s.Number(), len(encryption.Stages()), s)
				started[s] = time.Now()
				e.cfg.Progress.PhaseStart(titles[s], len(e.Placement().ControlPlane))
				return
			}
			e.cfg.Progress.PhaseDone(titles[s], err, time.Since(started[s]))
		}})
	res.Rotation = rot
	res.Resources = rc.resources()
	if rot != nil && rot.Key != "" {
		res.Key = rot.Key
	}
	// Where the rotation is now: the stages left, when it stopped.
	res.InProgress, res.Stages = false, nil
	if after, lerr := encryption.Load(e.cfg.Store.PKI()); lerr == nil && after != nil && after.Rotation != nil {
		res.InProgress, res.Key, res.Started = true, after.Rotation.Key, after.Rotation.Started
		res.Stages, _ = encryption.PlanRotation(after, res.Resources)
	}
	return res, err
}

// ErrNoKeyring is wrapped when the state holds no Secrets encryption keys
// (no apply ran with this release, or the state is not this cluster's).
var ErrNoKeyring = encryption.ErrNoKeyring

// prepareRotation reads the keyring and refuses what a rotation cannot
// run on.
func (e *Engine) prepareRotation() (*RotateKeyResult, *encryption.Keyring, error) {
	store := e.cfg.Store.PKI()
	res := &RotateKeyResult{Keyring: encryption.Where(store)}
	ring, err := encryption.Load(store)
	if err != nil {
		return res, nil, err
	}
	if ring == nil {
		return res, nil, fmt.Errorf("%w (%s): run tricenter apply first", ErrNoKeyring, res.Keyring)
	}
	res.Keys = ring.Names()
	res.Key = ring.NextName()
	if ring.Rotation != nil {
		res.InProgress, res.Key, res.Started = true, ring.Rotation.Key, ring.Rotation.Started
	}
	if len(e.Placement().ControlPlane) == 0 {
		return res, nil, errors.New("the placement has no control-plane server")
	}
	rec, err := e.UpgradeInProgress()
	if err != nil {
		return res, nil, err
	}
	if rec != nil {
		return res, nil, fmt.Errorf("an upgrade to Kubernetes %s is in progress (started %s): finish it with tricenter upgrade, then rotate the key",
			rec.Plan.Kubernetes, rec.Started.Format(time.RFC3339))
	}
	return res, ring, nil
}

// rotationCluster is encryption.Cluster over the engine: the control-plane
// servers through SSH (their EncryptionConfig), each kube-apiserver's
// /metrics directly (through the jump hosts), the API through the VIP and
// etcd with the engine's client.
type rotationCluster struct {
	e *Engine
	m *phase.Manager
	o RotateKeyOptions

	// fileHash is each server's configuration file as Observe read it
	// (encryption.Hash).
	fileHash map[string]string
	// onServers are the resources the servers encrypt.
	onServers []string

	mu   sync.Mutex
	etcd *etcd.Client
	rw   *rewriter
}

var _ encryption.Cluster = (*rotationCluster)(nil)

func (c *rotationCluster) close() {
	if c.etcd != nil {
		_ = c.etcd.Close()
	}
}

func (c *rotationCluster) resources() []string {
	return encryption.OrderResources(append([]string{encryption.Secrets}, c.onServers...))
}

func (c *rotationCluster) hosts() ([]*phase.Host, error) {
	var names []string
	for _, m := range c.e.Placement().ControlPlane {
		names = append(names, m.Name)
	}
	return c.m.Hosts(inventory.Selector{Servers: names})
}

// encryptionMarker starts the answer of configQuery when the file exists.
const encryptionMarker = "tricenter: encryption configuration present"

// Observe reads every control-plane server's encryption configuration.
// The content holds keys: it is parsed here, never logged nor quoted.
func (c *rotationCluster) Observe(ctx context.Context) (map[string]*encryption.HostConfig, error) {
	hosts, err := c.hosts()
	if err != nil {
		return nil, err
	}
	p := shell.Quote(controlplane.EncryptionConfig)
	cmd := "if [ -f " + p + " ]; then echo '" + encryptionMarker + "'; cat -- " + p + "; fi"
	out := map[string]*encryption.HostConfig{}
	c.fileHash = map[string]string{}
	var mu sync.Mutex
	err = c.m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		s, err := h.Query(ctx, cmd)
		if err != nil {
			return fmt.Errorf("reading %s: %w", controlplane.EncryptionConfig, err)
		}
		body, ok := strings.CutPrefix(s, encryptionMarker+"\n")
		var hc *encryption.HostConfig
		if ok {
			if hc, err = encryption.Parse([]byte(body)); err != nil {
				return fmt.Errorf("%s: %w: put back the file tricenter wrote (another control-plane server's copy) or run tricenter apply",
					controlplane.EncryptionConfig, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		out[h.Name] = hc
		if ok {
			c.fileHash[h.Name] = encryption.Hash([]byte(body))
			if hc.Keyring != nil {
				c.onServers = append(c.onServers, hc.Resources...)
			}
		}
		return nil
	})
	return out, err
}

// Configure writes config to every control-plane server (0600, root,
// secret content: no digest shown) and waits until every kube-apiserver
// loaded it.
func (c *rotationCluster) Configure(ctx context.Context, keys []string, config []byte) error {
	hosts, err := c.hosts()
	if err != nil {
		return err
	}
	err = c.m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		_, err := h.InstallFiles(ctx, "", []phase.File{{Path: controlplane.EncryptionConfig, Data: config, Mode: 0o600, Secret: true}})
		if err != nil {
			return fmt.Errorf("writing the encryption configuration (%s): %w", strings.Join(keys, ", "), err)
		}
		return nil
	})
	if err != nil || c.m.DryRun {
		return err
	}
	servers := map[string]metricsFetch{}
	for _, m := range c.e.Placement().ControlPlane {
		servers[m.Name] = c.fetcher(m.Address)
	}
	timeout := c.o.ReloadTimeout
	if timeout <= 0 {
		timeout = DefaultReloadTimeout
	}
	return waitConfigLoaded(ctx, servers, encryption.Hash(config), keys, timeout, reloadPoll, c.e.log)
}

// fetcher reads /metrics of the kube-apiserver at addr (admin
// credentials, a new connection each time).
func (c *rotationCluster) fetcher(addr string) metricsFetch {
	server := apiURL(addr)
	return func(ctx context.Context) ([]byte, error) {
		hc, err := c.e.apiHTTPClient(server)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsBytes))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("/metrics: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 300)])))
		}
		return body, nil
	}
}

// loadedHash is what a kube-apiserver's /metrics said about its
// encryption configuration.
type loadedHash struct {
	hash string
	err  error
}

// loadedHashes asks every kube-apiserver which configuration it uses.
func (c *rotationCluster) loadedHashes(ctx context.Context) map[string]loadedHash {
	out := map[string]loadedHash{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range c.e.Placement().ControlPlane {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var l loadedHash
			b, err := c.fetcher(m.Address)(ctx)
			if err == nil {
				var em encryptionMetrics
				em, err = parseEncryptionMetrics(b)
				l.hash = em.Hash
			}
			l.err = err
			mu.Lock()
			out[m.Name] = l
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// Rewrite rewrites the objects through the API (the VIP) and checks them
// in etcd (rewriter.Rewrite).
func (c *rotationCluster) Rewrite(ctx context.Context, resources []string, key encryption.Key, all bool) (encryption.RewriteReport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rw == nil {
		cs, err := c.e.Clientset()
		if err != nil {
			return encryption.RewriteReport{}, err
		}
		p, err := c.e.EtcdPKI(false)
		if err != nil {
			return encryption.RewriteReport{}, err
		}
		cli, err := c.e.EtcdClient(p)
		if err != nil {
			return encryption.RewriteReport{}, err
		}
		c.etcd = cli
		c.rw = &rewriter{cs: cs, kv: cli.KV(), log: c.e.log}
	}
	return c.rw.Rewrite(ctx, resources, key, all)
}

// Reading each kube-apiserver's encryption configuration from its metrics.

// The metrics kube-apiserver (v1.33 and later) keeps about its encryption
// configuration (k8s.io/apiserver/pkg/server/options/encryptionconfig/
// metrics): the hash of the file it loaded last, set at start and at every
// automatic reload, and the count of reloads by status.
const (
	metricConfigInfo = "apiserver_encryption_config_controller_last_config_info"
	metricReloads    = "apiserver_encryption_config_controller_automatic_reloads_total"
	// maxMetricsBytes bounds a /metrics answer (a few MB on a busy
	// server).
	maxMetricsBytes = 64 << 20
)

// encryptionMetrics is what /metrics says about the encryption
// configuration.
type encryptionMetrics struct {
	// Hash is the sha256:<hex> of the configuration it uses ("" when the
	// metric is absent).
	Hash string
	// Failures and Successes count its automatic reloads.
	Failures, Successes int
}

// parseEncryptionMetrics reads the Prometheus text exposition for the
// encryption configuration's metrics. Only their lines are looked at.
func parseEncryptionMetrics(b []byte) (encryptionMetrics, error) {
	var m encryptionMetrics
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || (name != metricConfigInfo && name != metricReloads) {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return m, fmt.Errorf("/metrics: a %s line without labels and value", name)
		}
		switch name {
		case metricConfigInfo:
			m.Hash = label(labels, "hash")
		case metricReloads:
			f := strings.Fields(value)
			if len(f) == 0 {
				return m, fmt.Errorf("/metrics: a %s line without value", name)
			}
			n, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return m, fmt.Errorf("/metrics: %s value %q", name, value)
			}
			switch label(labels, "status") {
			case "failure":
				m.Failures += int(n)
			case "success":
				m.Successes += int(n)
			}
		}
	}
	return m, sc.Err()
}

// label is the value of a label in a Prometheus label set (values
// tricenter reads hold no quotes or commas).
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// metricsFetch reads one kube-apiserver's /metrics.
type metricsFetch func(ctx context.Context) ([]byte, error)

// reloadPoll is how often the kube-apiservers are asked while a
// configuration loads.
const reloadPoll = 3 * time.Second

// waitConfigLoaded waits until every server's kube-apiserver says it uses
// the configuration whose hash is want (encryption.Hash), or timeout
// passes. keys name the configuration in messages; the hash never appears.
func waitConfigLoaded(ctx context.Context, servers map[string]metricsFetch, want string, keys []string, timeout, poll time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	names := slices.Sorted(maps.Keys(servers))
	log.Info("Waiting for every kube-apiserver to load the encryption configuration", "keys", strings.Join(keys, ", "),
		"servers", strings.Join(names, ", "), "timeout", timeout)
	loaded := map[string]bool{}
	why := map[string]string{}
	failures0 := map[string]int{}
	for {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range names {
			if loaded[n] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := servers[n](ctx)
				var m encryptionMetrics
				if err == nil {
					m, err = parseEncryptionMetrics(b)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					why[n] = "its /metrics did not answer: " + err.Error()
				case m.Hash == "":
					why[n] = "its /metrics has no " + metricConfigInfo + " (kube-apiserver older than v1.33?)"
				case m.Hash == want:
					loaded[n] = true
					log.Info("kube-apiserver uses the encryption configuration", "host", n, "keys", strings.Join(keys, ", "),
						"after", time.Since(start).Round(time.Second))
				default:
					if _, ok := failures0[n]; !ok {
						failures0[n] = m.Failures
					}
					why[n] = "it still uses its previous configuration"
					if f := m.Failures - failures0[n]; f > 0 {
						why[n] += fmt.Sprintf(" (%d failed reloads since: see journalctl -u kube-apiserver there)", f)
					}
				}
			}()
		}
		wg.Wait()
		var left []string
		for _, n := range names {
			if !loaded[n] {
				left = append(left, n+": "+why[n])
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v, not every kube-apiserver uses the encryption configuration with %s (%s); "+
				"kube-apiserver reloads it within a minute of a change (--encryption-provider-config-automatic-reload): "+
				"one that does not runs without that flag or cannot read the file (tricenter apply converges both)",
				timeout, strings.Join(keys, ", "), strings.Join(left, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// Rewriting objects through the API and checking them in etcd.

// etcdResourcePrefix is where kube-apiserver stores a resource in etcd
// (the default --etcd-prefix, /registry, which tricenter keeps).
func etcdResourcePrefix(resource string) string { return "/registry/" + resource + "/" }

// Paging of the rewrite and of the check.
const (
	rewritePage   = 250
	checkPage     = 64 // values are read whole: up to 1 MiB each
	rewriteWorker = 4
	// maxStaleNamed bounds the objects an error names.
	maxStaleNamed = 10
)

// rewriter rewrites objects through the API and checks their values in
// etcd.
type rewriter struct {
	cs  kubernetes.Interface
	kv  clientv3.KV
	log *slog.Logger
}

// Rewrite rewrites every object of resources (when all is set), then
// reads every value of theirs in etcd: one that does not start with key's
// prefix (written before the new key was first everywhere, or missed by
// the listing) is rewritten by name, and the values are read again; any
// still without it fails the rewrite, named.
func (w *rewriter) Rewrite(ctx context.Context, resources []string, key encryption.Key, all bool) (encryption.RewriteReport, error) {
	var rep encryption.RewriteReport
	log := w.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, r := range resources {
		api, err := rewriteAPIFor(w.cs, r)
		if err != nil {
			return rep, err
		}
		if all {
			n, err := api.rewriteAll(ctx, log)
			rep.Rewritten += n
			if err != nil {
				return rep, err
			}
			log.Info("Rewrote every object through the API", "resource", r, "objects", n)
		}
		checked, stale, err := checkStored(ctx, w.kv, r, key.Prefix())
		if err != nil {
			return rep, err
		}
		if len(stale) > 0 {
			log.Info("Rewriting objects etcd still holds under another key", "resource", r, "objects", len(stale), "key", key.Name)
			n, err := api.rewriteNamed(ctx, stale)
			rep.Rewritten += n
			if err != nil {
				return rep, err
			}
			if checked, stale, err = checkStored(ctx, w.kv, r, key.Prefix()); err != nil {
				return rep, err
			}
		}
		if len(stale) > 0 {
			named := stale[:min(len(stale), maxStaleNamed)]
			more := ""
			if len(stale) > len(named) {
				more = fmt.Sprintf(" and %d more", len(stale)-len(named))
			}
			return rep, fmt.Errorf("%d of %d %s in etcd are not encrypted with %s after their rewrite: %s%s "+
				"(an update the API refuses, or a kube-apiserver still writing with another key)",
				len(stale), checked, r, key.Name, strings.Join(named, ", "), more)
		}
		rep.Checked += checked
		log.Info("Every value in etcd is encrypted with the new key", "resource", r, "objects", checked, "key", key.Name)
	}
	return rep, nil
}

// checkStored reads every value of resource in etcd (in pages) and
// returns how many there are and the namespace/name of those that do not
// start with prefix. Values are never logged nor returned.
func checkStored(ctx context.Context, kv clientv3.KV, resource, prefix string) (int, []string, error) {
	base := etcdResourcePrefix(resource)
	end := clientv3.GetPrefixRangeEnd(base)
	key := base
	checked := 0
	var stale []string
	for {
		gctx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := kv.Get(gctx, key, clientv3.WithRange(end), clientv3.WithLimit(checkPage))
		cancel()
		if err != nil {
			return checked, stale, fmt.Errorf("reading %s from etcd: %w", resource, err)
		}
		for _, x := range resp.Kvs {
			checked++
			if !bytes.HasPrefix(x.Value, []byte(prefix)) {
				stale = append(stale, strings.TrimPrefix(string(x.Key), base))
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return checked, stale, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// rewriteAPI is one resource's list, get and update.
type rewriteAPI struct {
	resource string
	// list returns a page of namespace/name items and the continue token.
	list   func(ctx context.Context, o metav1.ListOptions) ([]object, string, error)
	get    func(ctx context.Context, ns, name string) (object, error)
	update func(ctx context.Context, obj object) error
}

// object is an item of a list, to be written back unchanged.
type object interface {
	GetNamespace() string
	GetName() string
}

// fieldManager names tricenter's unchanged updates.
const fieldManager = "tricenter"

func rewriteAPIFor(cs kubernetes.Interface, resource string) (*rewriteAPI, error) {
	up := metav1.UpdateOptions{FieldManager: fieldManager}
	c := cs.CoreV1()
	switch resource {
	case encryption.Secrets:
		return typedRewriteAPI(resource,
			func(ctx context.Context, o metav1.ListOptions) ([]corev1.Secret, string, error) {
				l, err := c.Secrets("").List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				return l.Items, l.Continue, nil
			},
			func(ctx context.Context, ns, name string) (*corev1.Secret, error) {
				return c.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			},
			func(ctx context.Context, obj *corev1.Secret) (*corev1.Secret, error) {
				return c.Secrets(obj.Namespace).Update(ctx, obj, up)
			}), nil
	case encryption.ConfigMaps:
		return typedRewriteAPI(resource,
			func(ctx context.Context, o metav1.ListOptions) ([]corev1.ConfigMap, string, error) {
				l, err := c.ConfigMaps("").List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				return l.Items, l.Continue, nil
			},
			func(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
				return c.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			},
			func(ctx context.Context, obj *corev1.ConfigMap) (*corev1.ConfigMap, error) {
				return c.ConfigMaps(obj.Namespace).Update(ctx, obj, up)
			}), nil
	}
	return nil, fmt.Errorf("rewriting %s: only %s and %s are encrypted", resource, encryption.Secrets, encryption.ConfigMaps)
}

// typedRewriteAPI adapts one resource's typed client calls to rewriteAPI.
func typedRewriteAPI[T any, P interface {
	*T
	object
}](resource string,
	list func(context.Context, metav1.ListOptions) ([]T, string, error),
	get func(context.Context, string, string) (P, error),
	update func(context.Context, P) (P, error)) *rewriteAPI {
	return &rewriteAPI{resource: resource,
		list: func(ctx context.Context, o metav1.ListOptions) ([]object, string, error) {
			items, cont, err := list(ctx, o)
			if err != nil {
				return nil, "", err
			}
			out := make([]object, len(items))
			for i := range items {
				out[i] = P(&items[i])
			}
			return out, cont, nil
		},
		get: func(ctx context.Context, ns, name string) (object, error) {
			obj, err := get(ctx, ns, name)
			if err != nil {
				return nil, err
			}
			return obj, nil
		},
		update: func(ctx context.Context, obj object) error {
			_, err := update(ctx, obj.(P))
			return err
		}}
}

// maxListRestarts bounds how often a listing starts over after its
// continue token expired (a very long rewrite).
const maxListRestarts = 3

// rewriteAll lists every object (in pages) and writes each back unchanged:
// kube-apiserver then stores it with the first key of its configuration,
// as kubectl get -o json | kubectl replace -f - does.
func (a *rewriteAPI) rewriteAll(ctx context.Context, log *slog.Logger) (int, error) {
	n, restarts := 0, 0
	cont := ""
	for {
		items, next, err := a.list(ctx, metav1.ListOptions{Limit: rewritePage, Continue: cont})
		if apierrors.IsResourceExpired(err) && cont != "" && restarts < maxListRestarts {
			// Rewriting again what was rewritten is harmless.
			restarts++
			log.Info("The listing's continue token expired: listing again from the start", "resource", a.resource)
			cont = ""
			continue
		}
		if err != nil {
			return n, fmt.Errorf("listing %s: %w", a.resource, err)
		}
		done, err := a.rewriteEach(ctx, items)
		n += done
		if err != nil {
			return n, err
		}
		if next == "" {
			return n, nil
		}
		cont = next
	}
}

// rewriteNamed rewrites the objects named namespace/name.
func (a *rewriteAPI) rewriteNamed(ctx context.Context, names []string) (int, error) {
	var items []object
	for _, nn := range names {
		ns, name, ok := strings.Cut(nn, "/")
		if !ok {
			continue
		}
		obj, err := a.get(ctx, ns, name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reading %s %s: %w", a.resource, nn, err)
		}
		items = append(items, obj)
	}
	return a.rewriteEach(ctx, items)
}

// rewriteEach writes the items back, a few at a time (the client's QPS
// bounds the rate).
func (a *rewriteAPI) rewriteEach(ctx context.Context, items []object) (int, error) {
	var mu sync.Mutex
	n := 0
	var errs []error
	sem := make(chan struct{}, rewriteWorker)
	var wg sync.WaitGroup
	for _, obj := range items {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			wrote, err := a.rewriteOne(ctx, obj)
			mu.Lock()
			defer mu.Unlock()
			if wrote {
				n++
			}
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return n, err
	}
	return n, errors.Join(errs...)
}

// maxConflicts bounds the re-reads of one object that others keep
// changing.
const maxConflicts = 5

// rewriteOne writes obj back unchanged; on a conflict (someone changed it
// since it was read) it reads it again and writes that back. An object
// deleted meanwhile needs nothing.
func (a *rewriteAPI) rewriteOne(ctx context.Context, obj object) (bool, error) {
	nn := obj.GetNamespace() + "/" + obj.GetName()
	for range maxConflicts {
		err := a.update(ctx, obj)
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err):
			return false, nil
		case !apierrors.IsConflict(err):
			return false, fmt.Errorf("rewriting %s %s: %w", a.resource, nn, err)
		}
		obj, err = a.get(ctx, obj.GetNamespace(), obj.GetName())
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading %s %s again after a conflict: %w", a.resource, nn, err)
		}
	}
	return false, fmt.Errorf("rewriting %s %s: it changed %d times while being rewritten: run again", a.resource, nn, maxConflicts)
}
