package backup

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// artifactDir is the repository's .cache/artifacts (make artifacts).
func artifactDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", ".cache", "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// etcdBinaries returns the artifact set's etcd server of each supported
// minor (newest patch), the default release first.
func etcdBinaries(t testing.TB) []string {
	t.Helper()
	arts := artifactDir(t)
	def := filepath.Join(arts, artifacts.DefaultName("etcd"))
	testenv.RequireFile(t, "the pinned etcd: run make artifacts", def)
	out := []string{def}
	for _, minor := range inventory.SupportedEtcdMinors {
		if strings.HasPrefix(inventory.DefaultEtcdVersion, "v"+minor+".") {
			continue
		}
		out = append(out, newestArtifact(t, "etcd", minor))
	}
	return out
}

// newestArtifact is bin's newest patch of minor in the artifact set.
func newestArtifact(t testing.TB, bin, minor string) string {
	t.Helper()
	arts := artifactDir(t)
	m, _ := filepath.Glob(filepath.Join(arts, bin+"-v"+minor+".*"))
	testenv.Require(t, fmt.Sprintf("%s-v%s.x in %s: run make artifacts", bin, minor, arts), len(m) > 0)
	slices.SortFunc(m, func(a, b string) int {
		va, _ := inventory.ParseVersion(strings.TrimPrefix(filepath.Base(a), bin+"-"))
		vb, _ := inventory.ParseVersion(strings.TrimPrefix(filepath.Base(b), bin+"-"))
		return va.Compare(vb)
	})
	return m[len(m)-1]
}

// restoreTool is the artifact set's etcdutl of etcd server bin's release
// (etcd-vX.Y.Z → etcdutl-vX.Y.Z): what restores its snapshots.
func restoreTool(t testing.TB, bin string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(bin), strings.Replace(filepath.Base(bin), "etcd-", "etcdutl-", 1))
	testenv.RequireFile(t, "etcdutl of the release: run make artifacts", p)
	return p
}

// proc is a process the test started; the test's cleanup kills it by
// its pid and waits for it.
type proc struct {
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.out.String()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return s
}

func startProc(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", filepath.Base(bin), p)
		}
	})
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tlsEtcd is a one-member etcd with mutual TLS on loopback, and the files
// a Config needs to reach it with a dedicated client certificate.
type tlsEtcd struct {
	name, url          string
	caCert, cert, key  string
	bin                string
	identity           *ecdh.PrivateKey
	recipient, workDir string
}

// startTLSEtcd starts bin as the single member name of a new cluster: the
// etcd CA, the member's server certificate and a client certificate of
// its own ("snapshot") come from the installer's PKI code.
func startTLSEtcd(t *testing.T, bin, name string) *tlsEtcd {
	t.Helper()
	dir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	p, err := store.EnsureEtcd([]pki.EtcdMember{{Name: name, Address: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	client, _, err := store.Leaf(p.CA, pki.EtcdCA, "client-snapshot", pki.Request{CommonName: "tricenter-snapshot", Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	for n, kp := range map[string]*pki.KeyPair{"server": p.Server[name], "client": client} {
		if err := kp.Save(filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), p.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &tlsEtcd{name: name, bin: bin, url: fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		caCert: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "client.crt"), key: filepath.Join(dir, "client.key"),
		identity: newIdentity(t), workDir: dir}
	e.recipient = EncodeRecipient(e.identity.PublicKey())
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	pr := startProc(t, bin, "--name", name, "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", e.url, "--advertise-client-urls", e.url,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", name+"="+peer,
		"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--trusted-ca-file", e.caCert, "--client-cert-auth", "--log-level", "warn")
	cli := e.client(t)
	waitReady(t, cli, e.url, pr)
	return e
}

// client connects with the dedicated client certificate.
func (e *tlsEtcd) client(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := e.config(t.TempDir())
	tc, err := cfg.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.url}, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// config is a Config taking snapshots of e into dir.
func (e *tlsEtcd) config(dir string) *Config {
	return &Config{Cluster: "lab", StoredOn: "dc1-r01-s01", StoredCenter: "dc1", Dir: dir, Keep: 5,
		Recipient: e.recipient, CACert: e.caCert, Cert: e.cert, Key: e.key,
		Sources: []Source{{Name: e.name, Center: "dc3", URL: e.url}}}
}

// waitReady polls until a linearizable read through cli answers.
func waitReady(t testing.TB, cli *clientv3.Client, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "ready-probe")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("etcd at %s exited:\n%s", url, p)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s did not answer within 30s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clock is a now func that moves on a minute at each call.
func clock(start time.Time) func() time.Time {
	var mu sync.Mutex
	t := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Minute)
		return t
	}
}

// logBuffer is a text slog logger into a buffer.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

const testKeys = 200

func testValue(i int) string {
	return fmt.Sprintf("secret-value-%04d-%s", i, strings.Repeat("x", 100))
}

// TestTakeAgainstRealEtcd takes a snapshot from a real etcd (each
// supported minor from .cache/artifacts, the default release first) over
// mutual TLS with a dedicated client certificate, and checks the result
// as a restore would: OpenRecorded opens the sealed file with the
// identity (and checks it against its record) into a temporary file;
// etcdutl `snapshot restore` of the same release (which checks the
// sha256 etcd appends to the stream) turns that plain database into a
// data directory; the same etcd release started from it serves, at
// Meta.Revision, exactly the 200 keys written before the snapshot with
// their values, Meta.Keys of them. Then Rehearse does the same on its own
// (checkRehearse).
func TestTakeAgainstRealEtcd(t *testing.T) {
	bins := etcdBinaries(t)
	for _, bin := range bins {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			restore := restoreTool(t, bin)
			e := startTLSEtcd(t, bin, "dc3-r01-s01")
			cli := e.client(t)
			ctx := context.Background()
			for i := range testKeys {
				if _, err := cli.Put(ctx, fmt.Sprintf("/registry/secrets/ns/s%04d", i), testValue(i)); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(t.TempDir(), "snapshots")
			cfg := e.config(dir)
			var logs logBuffer
			start := time.Now()
			m, err := Take(ctx, cfg, logs.logger(), clock(t0))
			if err != nil {
				t.Fatalf("Take: %v\nlog:\n%s", err, logs.String())
			}
			t.Logf("Take: %v, %d plain bytes, %d sealed", time.Since(start).Round(time.Millisecond), m.PlainBytes, m.SealedBytes)

			if m.Keys != testKeys || m.Revision < testKeys+1 || m.Member != e.name || m.MemberCenter != "dc3" ||
				m.StoredOn != "dc1-r01-s01" || m.Recipient != e.recipient || m.EtcdVersion == "" ||
				!strings.HasPrefix(filepath.Base(bin), "etcd-v"+m.EtcdVersion) {
				t.Errorf("Meta %+v", m)
			}
			if m.ID != "lab-20260301T020100Z-dc3-r01-s01" {
				t.Errorf("ID %s", m.ID)
			}
			d := Dir{Path: dir}
			listed, err := d.List()
			if err != nil || len(listed) != 1 || listed[0] != m {
				t.Fatalf("List: %v, %v; want the Meta Take returned", listed, err)
			}
			if err := d.Check(m); err != nil {
				t.Fatal(err)
			}
			sealed, err := os.ReadFile(d.SealedPath(m.ID))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(sealed, []byte("secret-value-0007")) {
				t.Fatal("the sealed file holds a value in plain text")
			}
			if names := dirNames(t, d); !slices.Equal(names, []string{m.ID + MetaExt, m.ID + SealedExt}) {
				t.Fatalf("the snapshot directory holds %v", names)
			}
			for _, secret := range []string{EncodeIdentity(e.identity), "secret-value"} {
				if strings.Contains(logs.String(), secret) {
					t.Fatalf("the log holds %q", secret[:12])
				}
			}

			// Open into a temporary file, as a restore does.
			plain := filepath.Join(t.TempDir(), "snapshot.db")
			f, err := os.Create(plain)
			if err != nil {
				t.Fatal(err)
			}
			n, err := OpenRecorded(f, bytes.NewReader(sealed), m, e.identity)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil || n != m.PlainBytes {
				t.Fatalf("OpenRecorded: %d bytes, %v; want %d", n, err, m.PlainBytes)
			}
			verifyRestore(t, restore, bin, plain, m)
			checkRehearse(t, restore, bin, plain, d, m)
		})
	}
}

// verifyRestore restores db with etcdutl, starts etcd bin on it and reads
// the keys back at m.Revision.
func verifyRestore(t *testing.T, restore, bin, db string, m Meta) {
	t.Helper()
	var st struct {
		Revision int64 `json:"revision"`
	}
	out, err := exec.Command(restore, "snapshot", "status", db, "-w", "json").Output()
	if err != nil {
		t.Fatalf("etcdutl snapshot status: %v", err)
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Revision < m.Revision {
		t.Fatalf("snapshot status %s (%v): revision below Meta's %d", out, err, m.Revision)
	}
	data := filepath.Join(t.TempDir(), "restored")
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cmd := exec.Command(restore, "snapshot", "restore", db, "--data-dir", data, "--name", "verify",
		"--initial-cluster", "verify="+peer, "--initial-advertise-peer-urls", peer)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
	}
	pr := startProc(t, bin, "--name", "verify", "--data-dir", data,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "verify="+peer,
		"--log-level", "warn")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	waitReady(t, cli, client, pr)
	ctx := context.Background()
	r, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithRev(m.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(r.Kvs)) != m.Keys || r.Count != m.Keys {
		t.Fatalf("the restored etcd has %d keys at revision %d, Meta says %d", len(r.Kvs), m.Revision, m.Keys)
	}
	for i, kv := range r.Kvs {
		if want := fmt.Sprintf("/registry/secrets/ns/s%04d", i); string(kv.Key) != want || string(kv.Value) != testValue(i) {
			t.Fatalf("restored key %d: %s, want %s with its value", i, kv.Key, want)
		}
	}
	t.Logf("restored with %s and served by %s: %d keys at revision %d", filepath.Base(restore), filepath.Base(bin), len(r.Kvs), m.Revision)
}

// TestTakeSources: an unreachable first source is skipped for the next;
// a source that answers as another member is refused; when none works
// the error names each; Keep=2 after three takes leaves two.
func TestTakeSources(t *testing.T) {
	bin := etcdBinaries(t)[0]
	e := startTLSEtcd(t, bin, "dc3-r01-s01")
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "snapshots")
	down := Source{Name: "dc2-r01-s01", Center: "dc2", URL: fmt.Sprintf("https://127.0.0.1:%d", freePort(t))}
	real := Source{Name: e.name, Center: "dc3", URL: e.url}
	now := clock(t0)

	t.Run("first source down", func(t *testing.T) {
		cfg := e.config(dir)
		cfg.Sources = []Source{down, real}
		var logs logBuffer
		m, err := Take(ctx, cfg, logs.logger(), now)
		if err != nil {
			t.Fatalf("Take: %v", err)
		}
		if m.Member != e.name {
			t.Fatalf("taken from %s", m.Member)
		}
		if !strings.Contains(logs.String(), `msg="Skipping etcd member" member=dc2-r01-s01`) {
			t.Errorf("the log does not say why the first source was skipped:\n%s", logs.String())
		}
	})

	t.Run("every source fails", func(t *testing.T) {
		cfg := e.config(dir)
		// The real member, configured under another name.
		wrong := Source{Name: "dc3-r02-s01", Center: "dc3", URL: e.url}
		cfg.Sources = []Source{down, wrong}
		_, err := Take(ctx, cfg, nil, now)
		if err == nil {
			t.Fatal("Take succeeded")
		}
		for _, want := range []string{"no etcd member gave a snapshot", "dc2-r01-s01 (dc2, " + down.URL + "): connecting: ", "connection refused",
			`dc3-r02-s01 (dc3, ` + e.url + `): it answers as member "dc3-r01-s01"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
	})

	t.Run("keep 2", func(t *testing.T) {
		cfg := e.config(dir)
		cfg.Keep = 2
		var taken []string
		for range 3 {
			m, err := Take(ctx, cfg, nil, now)
			if err != nil {
				t.Fatal(err)
			}
			taken = append(taken, m.ID)
		}
		got, err := Dir{Path: dir}.List()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{taken[2], taken[1]}; !slices.Equal(ids(got), want) {
			t.Fatalf("after three takes with keep 2: %v, want %v", ids(got), want)
		}
	})

	t.Run("a client certificate of another CA", func(t *testing.T) {
		other := &pki.Store{Dir: filepath.Join(t.TempDir(), "pki")}
		ca, err := other.CA(pki.EtcdCA, "another etcd CA")
		if err != nil {
			t.Fatal(err)
		}
		kp, _, err := other.Leaf(ca, pki.EtcdCA, "client", pki.Request{CommonName: "intruder", Usage: pki.Client})
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.config(filepath.Join(t.TempDir(), "snapshots"))
		cfg.Cert, cfg.Key = filepath.Join(t.TempDir(), "c.crt"), filepath.Join(t.TempDir(), "c.key")
		if err := kp.Save(cfg.Cert, cfg.Key); err != nil {
			t.Fatal(err)
		}
		_, err = Take(ctx, cfg, nil, now)
		if err == nil || !strings.Contains(err.Error(), "dc3-r01-s01 (dc3, "+e.url+"): the member refused the client certificate: remote error: tls: ") {
			t.Fatalf("Take with a foreign client certificate: %v", err)
		}
	})
}

// TestTakeTimeout: a member that accepts connections and never answers
// holds Take no longer than cfg.Timeout, and the error says so.
func TestTakeTimeout(t *testing.T) {
	dir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	p, err := store.EnsureEtcd(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.Save(filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), p.CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // held open, silent
		}
	}()
	cfg := &Config{Cluster: "lab", StoredOn: "s", StoredCenter: "dc1", Dir: filepath.Join(dir, "snapshots"), Keep: 1,
		Recipient: EncodeRecipient(newIdentity(t).PublicKey()), CACert: filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, "c.crt"), Key: filepath.Join(dir, "c.key"), Timeout: "1s",
		Sources: []Source{{Name: "m1", Center: "dc3", URL: "https://" + l.Addr().String()}, {Name: "m2", Center: "dc3", URL: "https://127.0.0.1:1"}}}
	start := time.Now()
	_, err = Take(context.Background(), cfg, nil, nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no snapshot within the timeout of 1s: m1 (dc3, ") {
		t.Fatalf("Take: %v", err)
	}
	if took > 3*time.Second {
		t.Fatalf("Take returned after %v, its timeout is 1s", took)
	}
}

// checkRehearse: Rehearse restores db into a throw-away etcd of its own
// and finds the record's revision and key count; against a record that
// says more keys it reports the difference; a damaged database is
// refused by etcdutl (its sha256); the rehearsal record is written next
// to the snapshot, read back, and pruned with it.
func checkRehearse(t *testing.T, etcdutl, bin, db string, d Dir, m Meta) {
	t.Helper()
	ctx := context.Background()
	o := RehearseOptions{DB: db, Meta: m, Etcdutl: etcdutl, Etcd: bin, Dir: t.TempDir()}
	r, err := Rehearse(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Keys != m.Keys || r.Revision < m.Revision || r.ID != m.ID || r.EtcdVersion == "" || r.Detail != "" {
		t.Fatalf("Rehearse: %+v, record %+v", r, m)
	}
	t.Logf("rehearsal of %s: revision %d, %d keys, etcd %s, %v", m.ID, r.Revision, r.Keys, r.EtcdVersion, r.Took)
	if ents, _ := os.ReadDir(o.Dir); len(ents) != 0 {
		t.Errorf("Rehearse left %d entries in its scratch directory", len(ents))
	}

	bad := m
	bad.Keys++
	o.Meta = bad
	if r, err := Rehearse(ctx, o); err != nil || r.OK || !strings.Contains(r.Detail, fmt.Sprintf("%d keys at revision %d, the record says %d", m.Keys, m.Revision, bad.Keys)) {
		t.Fatalf("Rehearse against a record of %d keys: %+v, %v", bad.Keys, r, err)
	}

	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o.DB, o.Meta = damaged, m
	if _, err := Rehearse(ctx, o); err == nil || !strings.Contains(err.Error(), "snapshot restore") {
		t.Fatalf("Rehearse of a damaged database: %v", err)
	}

	if err := d.WriteRehearsal(r); err != nil {
		t.Fatal(err)
	}
	got, err := d.Rehearsal(m.ID)
	if err != nil || got == nil || *got != r {
		t.Fatalf("Rehearsal: %+v, %v; want %+v", got, err, r)
	}
	if removed, err := d.prune(1, time.Now()); err != nil || len(removed) != 0 {
		t.Fatalf("prune keeping the one snapshot removed %v, %v", removed, err)
	}
}
