package artifacts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// mirror is an httptest server with the artifact layout: files, their
// manifest, and per-path request counts. Handlers may be replaced per
// path to tamper with, stall or enlarge a response.
type mirror struct {
	srv      *httptest.Server
	files    map[string]string
	manifest string
	pin      string // sha256 of the genuine manifest
	mu       sync.Mutex
	hits     map[string]int
	override map[string]http.HandlerFunc
	release  chan struct{} // closed at the end of the test: stalled handlers return
}

func newMirror(t *testing.T, tls bool) *mirror {
	t.Helper()
	m := &mirror{files: map[string]string{"etcd": "etcd binary v3.5.35", "kubelet": strings.Repeat("kubelet ", 4096)},
		hits: map[string]int{}, override: map[string]http.HandlerFunc{}, release: make(chan struct{})}
	for _, n := range []string{"etcd", "kubelet"} {
		m.manifest += fsutil.SHA256Hex([]byte(m.files[n])) + "  " + n + "\n"
	}
	m.pin = fsutil.SHA256Hex([]byte(m.manifest))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/k8s/")
		m.mu.Lock()
		m.hits[name]++
		o := m.override[name]
		m.mu.Unlock()
		if o != nil {
			o(w, r)
			return
		}
		if name == ManifestName {
			fmt.Fprint(w, m.manifest)
			return
		}
		if b, ok := m.files[name]; ok {
			fmt.Fprint(w, b)
			return
		}
		http.NotFound(w, r)
	})
	if tls {
		m.srv = httptest.NewTLSServer(h)
	} else {
		m.srv = httptest.NewServer(h)
	}
	t.Cleanup(m.srv.Close)
	t.Cleanup(func() { close(m.release) }) // runs before Close, which waits for handlers
	return m
}

func (m *mirror) set(name string, h http.HandlerFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.override[name] = h
}

func (m *mirror) count(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits[name]
}

func (m *mirror) source(t *testing.T) Source {
	return Source{MirrorURL: m.srv.URL + "/k8s", CacheDir: t.TempDir(), ManifestSHA256: m.pin, Client: m.srv.Client()}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestMirrorFetchesVerifiesAndCaches(t *testing.T) {
	m := newMirror(t, true)
	ctx := ctxT(t)
	s := m.source(t)
	got, err := s.Files(ctx, "etcd", "kubelet")
	if err != nil {
		t.Fatal(err)
	}
	for n, f := range got {
		b, err := os.ReadFile(f.Path)
		if err != nil || string(b) != m.files[n] || f.SHA256 != fsutil.SHA256Hex(b) || f.Size != int64(len(b)) {
			t.Fatalf("%s: %+v holds %q (%v)", n, f, b, err)
		}
		if st, _ := os.Stat(f.Path); st.Mode().Perm() != 0o755 {
			t.Errorf("%s cached with mode %o, want 755", n, st.Mode().Perm())
		}
	}
	// A second run re-hashes the cache and fetches nothing but the manifest.
	if _, err := s.Files(ctx, "etcd", "kubelet"); err != nil {
		t.Fatal(err)
	}
	if m.count("etcd") != 1 || m.count("kubelet") != 1 || m.count(ManifestName) != 2 {
		t.Fatalf("requests %v: want each file once, the manifest twice", m.hits)
	}
	// A cached file altered in place (same size, mtime kept) is caught by
	// the hash, not trusted on size and time, and fetched again.
	p := got["etcd"].Path
	st, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte(strings.Repeat("X", int(st.Size()))), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, st.ModTime(), st.ModTime())
	if _, err := s.Files(ctx, "etcd"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != m.files["etcd"] || m.count("etcd") != 2 {
		t.Fatalf("an altered cached file was reused (%d fetches): %q", m.count("etcd"), b)
	}
	if left, _ := filepath.Glob(filepath.Join(s.CacheDir, ".*")); len(left) != 0 {
		t.Fatalf("temporary files left in the cache: %v", left)
	}
}

func TestMirrorRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		setup  func(m *mirror, s *Source)
		err    error
		msg    []string // the error also names these ({etcd}, {got}, {want} are filled in)
		noFile bool     // the file must not have been fetched
	}{
		{name: "tampered file", tls: true, setup: func(m *mirror, s *Source) {
			m.set("etcd", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "etcd binary v3.5.35 + backdoor") })
		}, err: ErrChecksum, msg: []string{"etcd", fsutil.SHA256Hex([]byte("etcd binary v3.5.35 + backdoor")), "{want-etcd}"}},
		{name: "tampered manifest", tls: true, setup: func(m *mirror, s *Source) {
			bad := fsutil.SHA256Hex([]byte("backdoor")) + "  etcd\n"
			m.set(ManifestName, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, bad) })
			m.set("etcd", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "backdoor") })
		}, err: ErrManifest, msg: []string{ManifestName, fsutil.SHA256Hex([]byte(fsutil.SHA256Hex([]byte("backdoor")) + "  etcd\n")), "{pin}"}, noFile: true},
		{name: "operator's manifest copy against a tampered mirror manifest", tls: true, setup: func(m *mirror, s *Source) {
			m.set(ManifestName, func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, fsutil.SHA256Hex([]byte("backdoor"))+"  etcd\n")
			})
			m.set("etcd", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "backdoor") })
			s.ManifestSHA256 = ""
			s.ManifestFile = filepath.Join(s.CacheDir, "..", "operator-SHA256SUMS")
			os.WriteFile(s.ManifestFile, []byte(m.manifest), 0o644)
		}, err: ErrChecksum, msg: []string{"etcd", fsutil.SHA256Hex([]byte("backdoor")), "{want-etcd}"}},
		{name: "operator's manifest copy not matching the pin", tls: true, setup: func(m *mirror, s *Source) {
			s.ManifestFile = filepath.Join(s.CacheDir, "..", "operator-SHA256SUMS")
			os.WriteFile(s.ManifestFile, []byte(m.manifest+"# edited\n"), 0o644)
		}, err: ErrManifest, msg: []string{"operator-SHA256SUMS", "{pin}"}, noFile: true},
		{name: "oversized file announced", tls: true, setup: func(m *mirror, s *Source) {
			s.MaxFileBytes = 10
		}, err: ErrTooLarge, msg: []string{"etcd", "limit is 10"}},
		{name: "oversized file streamed", tls: true, setup: func(m *mirror, s *Source) {
			s.MaxFileBytes = 1 << 10
			m.set("etcd", func(w http.ResponseWriter, r *http.Request) {
				for range 64 { // chunked, no Content-Length: 64 KiB
					fmt.Fprint(w, strings.Repeat("x", 1<<10))
					w.(http.Flusher).Flush()
				}
			})
		}, err: ErrTooLarge, msg: []string{"etcd", "more than 1024 bytes"}},
		{name: "oversized manifest", tls: true, setup: func(m *mirror, s *Source) {
			s.MaxManifestBytes = 16
		}, err: ErrTooLarge, msg: []string{ManifestName}, noFile: true},
		{name: "server that never answers", tls: true, setup: func(m *mirror, s *Source) {
			s.StallTimeout = 200 * time.Millisecond
			m.set("etcd", func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-m.release:
				case <-r.Context().Done():
				}
			})
		}, err: ErrStalled, msg: []string{"etcd", "200ms"}},
		{name: "server that stalls mid-body", tls: true, setup: func(m *mirror, s *Source) {
			s.StallTimeout = 200 * time.Millisecond
			m.set("kubelet", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100000")
				fmt.Fprint(w, strings.Repeat("k", 1000))
				w.(http.Flusher).Flush()
				select {
				case <-m.release:
				case <-r.Context().Done():
				}
			})
		}, err: ErrStalled, msg: []string{"kubelet"}},
		{name: "plain http without the opt-in", tls: false, setup: func(m *mirror, s *Source) {}, err: ErrInsecure,
			msg: []string{"allowInsecureMirror"}, noFile: true},
		{name: "redirect to plain http", tls: true, setup: func(m *mirror, s *Source) {
			m.set("etcd", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://198.18.0.1:9/k8s/etcd", http.StatusFound)
			})
		}, err: ErrInsecure, msg: []string{"redirected to http://198.18.0.1:9/k8s/etcd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMirror(t, tc.tls)
			s := m.source(t)
			tc.setup(m, &s)
			start := time.Now()
			_, err := s.Files(ctxT(t), "etcd", "kubelet")
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %s", el)
			}
			for _, want := range tc.msg {
				want = strings.NewReplacer("{pin}", m.pin, "{want-etcd}", fsutil.SHA256Hex([]byte(m.files["etcd"]))).Replace(want)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if tc.noFile && (m.count("etcd") != 0 || m.count("kubelet") != 0) {
				t.Errorf("files were fetched: %v", m.hits)
			}
			if tc.name == "plain http without the opt-in" && m.count(ManifestName) != 0 {
				t.Errorf("the plain http mirror was contacted: %v", m.hits)
			}
			// Only genuine files reach the cache; no temporary file stays.
			ents, _ := os.ReadDir(s.CacheDir)
			for _, e := range ents {
				b, _ := os.ReadFile(filepath.Join(s.CacheDir, e.Name()))
				if want, ok := m.files[e.Name()]; !ok || string(b) != want {
					t.Errorf("the cache holds %s (%d bytes) after a refused fetch", e.Name(), len(b))
				}
			}
		})
	}
}

func TestMirrorPlainHTTPWithOptIn(t *testing.T) {
	m := newMirror(t, false)
	s := m.source(t)
	s.AllowInsecure = true
	got, err := s.Resolve(ctxT(t), "etcd")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got["etcd"]); string(b) != m.files["etcd"] {
		t.Fatalf("fetched %q", b)
	}
}

func TestMirrorNeedsOperatorManifest(t *testing.T) {
	m := newMirror(t, true)
	s := m.source(t)
	s.ManifestSHA256 = ""
	if _, err := s.Files(ctxT(t), "etcd"); err == nil || !strings.Contains(err.Error(), "mirrorManifestSHA256") {
		t.Fatalf("got %v, want an error asking for the pin", err)
	}
	if m.count(ManifestName) != 0 {
		t.Fatal("the mirror was contacted without a pin")
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("etcd", "binary")
	write(ManifestName, fsutil.SHA256Hex([]byte("binary"))+"  etcd\n")
	s := Source{Dir: dir}
	ctx := ctxT(t)
	got, err := s.Resolve(ctx, "etcd")
	if err != nil || got["etcd"] != filepath.Join(dir, "etcd") {
		t.Fatalf("Resolve = %v, %v", got, err)
	}
	if _, err := s.Resolve(ctx, "etcdctl"); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Fatalf("missing artifact: err = %v", err)
	}
	if _, err := s.Resolve(ctx, "../etc/passwd"); err == nil || !strings.Contains(err.Error(), "plain file name") {
		t.Fatalf("a path as artifact name: err = %v", err)
	}
	write("etcd", "tampered")
	_, err = s.Resolve(ctx, "etcd")
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("tampered artifact: err = %v, want ErrChecksum", err)
	}
	for _, want := range []string{filepath.Join(dir, "etcd"), fsutil.SHA256Hex([]byte("tampered")), fsutil.SHA256Hex([]byte("binary"))} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	s.MaxManifestBytes = 10
	if _, err := s.Resolve(ctx, "etcd"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized manifest: err = %v, want ErrTooLarge", err)
	}
	if _, err := (Source{}).Resolve(ctx, "etcd"); err == nil || !strings.Contains(err.Error(), "artifactDir") {
		t.Fatalf("no source: err = %v", err)
	}
}

func TestFromInventory(t *testing.T) {
	k := inventory.Kubernetes{MirrorURL: "https://m.example/k8s", MirrorManifestSHA256: strings.Repeat("ab", 32),
		MirrorManifest: "/srv/SHA256SUMS", AllowInsecureMirror: true}
	s := FromInventory(k, "/var/cache/x")
	want := Source{MirrorURL: k.MirrorURL, CacheDir: "/var/cache/x", ManifestSHA256: k.MirrorManifestSHA256,
		ManifestFile: "/srv/SHA256SUMS", AllowInsecure: true}
	if fmt.Sprintf("%+v", s) != fmt.Sprintf("%+v", want) {
		t.Fatalf("FromInventory = %+v, want %+v", s, want)
	}
}

func TestParseManifest(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want map[string]string
		err  string
	}{
		{in: sum + "  etcd\n# comment\n\n" + strings.ToUpper(sum) + " *kubelet\n", want: map[string]string{"etcd": sum, "kubelet": sum}},
		{in: "zz  etcd\n", err: "line 1"},
		{in: sum + "\n", err: "line 1"},
		{in: sum + "  etcd\n" + sum + "  etcd\n", err: "twice"},
		{in: sum + "  *\n", err: "no file name"},
		{in: strings.Repeat("zz", 32) + "  etcd\n", err: "line 1"},
	} {
		got, err := ParseManifest([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("9b26d025f1d07134a3cabc002329d343e4b6aaed6d480ae00c04b2ff47642b87  etcd\n"))
	f.Add([]byte("# comment\n\nzz  x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		for name, sum := range m {
			if len(sum) != 64 || name == "" || strings.ToLower(sum) != sum {
				t.Fatalf("accepted entry %q=%q", name, sum)
			}
		}
	})
}
