package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func validConfig(t testing.TB) Config {
	t.Helper()
	return Config{Cluster: "lab", StoredOn: "dc1-r01-s01", StoredCenter: "dc1", Dir: "/var/lib/tricenter/snapshots", Keep: 7,
		Recipient: EncodeRecipient(newIdentity(t).PublicKey()),
		CACert:    "/etc/tricenter/snapshot/ca.crt", Cert: "/etc/tricenter/snapshot/client.crt", Key: "/etc/tricenter/snapshot/client.key",
		Sources: []Source{{Name: "dc3-r01-s01", Center: "dc3", URL: "https://198.19.5.10:2379"},
			{Name: "dc3-r02-s01", Center: "dc3", URL: "https://[fd00::1]:2379"}}}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"timeout", func(c *Config) { c.Timeout = "90s" }, ""},
		{"cluster", func(c *Config) { c.Cluster = "my lab" }, "cluster: "},
		{"storedOn", func(c *Config) { c.StoredOn = "" }, "storedOn: empty"},
		{"storedCenter", func(c *Config) { c.StoredCenter = "dc/1" }, "storedCenter: "},
		{"dir relative", func(c *Config) { c.Dir = "snapshots" }, "dir: \"snapshots\": want a clean absolute path"},
		{"dir unclean", func(c *Config) { c.Dir = "/var/lib/../x" }, "dir: "},
		{"caCert", func(c *Config) { c.CACert = "" }, "caCert: empty"},
		{"cert", func(c *Config) { c.Cert = "client.crt" }, "cert: "},
		{"key", func(c *Config) { c.Key = "" }, "key: empty"},
		{"keep", func(c *Config) { c.Keep = 0 }, "keep: 0: keep at least 1 snapshot"},
		{"recipient", func(c *Config) { c.Recipient = "age1xyz" }, "recipient: snapshot recipient: it must start with"},
		{"recipient is a private key", func(c *Config) { c.Recipient = EncodeIdentity(newIdentity(t)) }, "recipient: snapshot recipient: this is a snapshot identity"},
		{"timeout bad", func(c *Config) { c.Timeout = "10" }, `timeout: "10": want a positive duration`},
		{"timeout negative", func(c *Config) { c.Timeout = "-1m" }, "timeout: "},
		{"no sources", func(c *Config) { c.Sources = nil }, "sources: no etcd member"},
		{"source name", func(c *Config) { c.Sources[1].Name = "" }, "sources[1].name: empty"},
		{"source twice", func(c *Config) { c.Sources[1].Name = c.Sources[0].Name }, "sources[1].name: dc3-r01-s01 is listed twice"},
		{"source center", func(c *Config) { c.Sources[0].Center = "" }, "sources[0].center: empty"},
		{"http", func(c *Config) { c.Sources[0].URL = "http://198.19.5.10:2379" }, "sources[0].url: \"http://198.19.5.10:2379\": want https://host:port"},
		{"no port", func(c *Config) { c.Sources[0].URL = "https://198.19.5.10" }, "sources[0].url: "},
		{"path", func(c *Config) { c.Sources[0].URL = "https://198.19.5.10:2379/v3" }, "want only https://host:port"},
		{"url twice", func(c *Config) { c.Sources[1].URL = c.Sources[0].URL }, "sources[1].url: https://198.19.5.10:2379 is listed twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(t)
			c.change(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v, want %q", err, c.want)
			}
		})
	}
}

func TestConfigValidateNamesEveryField(t *testing.T) {
	err := (&Config{Sources: []Source{{}}}).Validate()
	for _, f := range []string{"cluster", "storedOn", "storedCenter", "dir", "caCert", "cert", "key", "keep", "recipient", "sources[0].name", "sources[0].center", "sources[0].url"} {
		if err == nil || !strings.Contains(err.Error(), f+": ") {
			t.Errorf("an empty configuration's error does not name %s:\n%v", f, err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := validConfig(t)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "snapshot.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sources[1].URL != "https://[fd00::1]:2379" || got.Keep != 7 {
		t.Fatalf("loaded %+v", got)
	}
	if d, err := got.TimeoutDuration(); err != nil || d != DefaultTimeout {
		t.Fatalf("default timeout %v, %v", d, err)
	}
	// The JSON names are camelCase.
	for _, k := range []string{`"storedOn"`, `"storedCenter"`, `"caCert"`, `"sources"`, `"url"`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("the JSON lacks %s: %s", k, b)
		}
	}

	for _, c := range []struct{ name, body, want string }{
		{"unknown field", `{"cluster":"lab","clustr":"x"}`, `unknown field "clustr"`},
		{"not json", `cluster: lab`, "invalid character"},
		{"invalid", `{"cluster":"lab"}`, "storedOn: empty"},
		{"two values", string(b) + string(b), "more than one JSON value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".json")
			if err := os.WriteFile(p, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), "snapshot configuration "+p+": ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadConfig: %v, want an error naming %s and %q", err, p, c.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("a missing file: %v", err)
	}
}

func TestTLSConfigNamesFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := validConfig(t)
	cfg.CACert = filepath.Join(dir, "ca.crt")
	if _, err := cfg.TLSConfig(); err == nil || !strings.Contains(err.Error(), "caCert: ") || !strings.Contains(err.Error(), cfg.CACert) {
		t.Fatalf("missing CA: %v", err)
	}
	if err := os.WriteFile(cfg.CACert, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.TLSConfig(); err == nil || !strings.Contains(err.Error(), "caCert: "+cfg.CACert+" holds no PEM certificate") {
		t.Fatalf("bad CA: %v", err)
	}
}

func TestTakeRefusesInvalidConfig(t *testing.T) {
	cfg := validConfig(t)
	cfg.Keep = 0
	if _, err := Take(t.Context(), &cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "snapshot configuration: keep: ") {
		t.Fatalf("Take: %v", err)
	}
}

func TestUsable(t *testing.T) {
	for _, c := range []struct {
		st   clientv3.StatusResponse
		want string
	}{
		{clientv3.StatusResponse{Leader: 7}, ""},
		{clientv3.StatusResponse{Leader: 7, IsLearner: true}, "it is a learner"},
		{clientv3.StatusResponse{Leader: 0}, "it knows no leader"},
		{clientv3.StatusResponse{Leader: 7, Errors: []string{"NOSPACE"}}, ""},
	} {
		err := usable(&c.st)
		if (err == nil) != (c.want == "") || err != nil && err.Error() != c.want {
			t.Errorf("usable(leader %d, learner %v): %v, want %q", c.st.Leader, c.st.IsLearner, err, c.want)
		}
	}
}

// stream is a fake snapshot stream: a database of n bytes followed by its
// sha256, as etcd sends it.
func stream(t testing.TB, n int) []byte {
	t.Helper()
	db := randomBytes(t, n)
	sum := sha256.Sum256(db)
	return append(db, sum[:]...)
}

func readStream(b []byte, chunk int) ([]byte, error) {
	s := &snapshotStream{r: chunkReader{bytes.NewReader(b), chunk}, h: sha256.New()}
	out, err := io.ReadAll(s)
	if err == nil && s.err != nil {
		return out, errors.New("err set without being returned")
	}
	return out, err
}

// chunkReader hands out at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (o chunkReader) Read(p []byte) (int, error) {
	if len(p) > o.n {
		p = p[:o.n]
	}
	return o.r.Read(p)
}

func TestSnapshotStream(t *testing.T) {
	good := stream(t, 4*512)
	for _, chunk := range []int{1, 7, 31, 32, 33, 512, 1 << 20} {
		out, err := readStream(good, chunk)
		if err != nil {
			t.Fatalf("reads of %d: %v", chunk, err)
		}
		if !bytes.Equal(out, good) {
			t.Fatalf("reads of %d: the stream passed through changed", chunk)
		}
	}
	bad := bytes.Clone(good)
	bad[100] ^= 1
	if _, err := readStream(bad, 100); err == nil || !strings.Contains(err.Error(), "does not match the database") {
		t.Errorf("a changed byte: %v", err)
	}
	if _, err := readStream(good[:len(good)-512], 100); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a cut stream: %v", err)
	}
	if _, err := readStream(good[:len(good)-1], 100); err == nil || !strings.Contains(err.Error(), "not a database followed by its sha256") {
		t.Errorf("a misaligned stream: %v", err)
	}
	if _, err := readStream(good[:20], 100); err == nil || !strings.Contains(err.Error(), "ended after 20 bytes") {
		t.Errorf("a short stream: %v", err)
	}
	// The stream's own failure is kept.
	boom := errors.New("stream reset")
	s := &snapshotStream{r: io.MultiReader(bytes.NewReader(good[:600]), iotestErr{boom}), h: sha256.New()}
	if _, err := io.ReadAll(s); !errors.Is(err, boom) || !errors.Is(s.err, boom) {
		t.Errorf("a broken stream: %v (kept %v)", err, s.err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }
