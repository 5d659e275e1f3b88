// Package artifacts locates the binaries tricenter installs (etcd, the
// Kubernetes components, tricenter-bgp) and proves their content against a
// sha256 manifest that comes from the operator's side:
//
//   - an artifact directory (air-gapped, the default) holds the binaries
//     and the SHA256SUMS `make artifacts` wrote next to them;
//   - an https mirror holds the same layout, but its SHA256SUMS is used
//     only when its own sha256 matches the pin in the inventory
//     (spec.kubernetes.mirrorManifestSHA256), or is replaced by the
//     operator's copy (spec.kubernetes.mirrorManifest). A mirror cannot
//     change a binary without the manifest, nor the manifest without the
//     pin. Plain http is refused unless the inventory allows it for a lab.
//
// Every fetch has a size limit and a stall timeout and streams to a
// temporary file, hashed as it arrives; nothing is read whole into memory
// but the manifest (at most MaxManifestBytes).
//
// What is checked when: Files hashes every requested artifact each time it
// is called (a directory's files, and a mirror's cached files before they
// are reused, are re-hashed, never trusted on size or time), and the
// uploads that follow are verified on each host against the same digests.
package artifacts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ManifestName is the sha256 manifest of an artifact directory or mirror
// (sha256sum format).
const ManifestName = "SHA256SUMS"

// Defaults for Source.
const (
	DefaultMaxManifestBytes = 1 << 20 // 1 MiB: a few hundred lines
	DefaultMaxFileBytes     = 2 << 30 // 2 GiB: the largest binary is ~100 MiB, image tarballs more
	// DefaultStallTimeout ends a fetch when the mirror sends nothing for
	// this long (waiting for the response headers included). A transfer
	// that keeps moving is never cut, however long it takes.
	DefaultStallTimeout = 30 * time.Second
	// DefaultDialTimeout bounds the TCP connect and the TLS handshake.
	DefaultDialTimeout = 10 * time.Second
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrChecksum: an artifact does not have the sha256 its manifest lists.
	ErrChecksum = errors.New("artifact checksum mismatch")
	// ErrManifest: the mirror's manifest does not have the pinned sha256.
	ErrManifest = errors.New("mirror manifest does not match its pin")
	// ErrTooLarge: a fetch exceeded its size limit.
	ErrTooLarge = errors.New("mirror response too large")
	// ErrInsecure: the mirror is plain http and the inventory does not
	// allow it.
	ErrInsecure = errors.New("plain http mirror not allowed")
	// ErrStalled: the mirror sent nothing for the stall timeout.
	ErrStalled = errors.New("mirror stalled")
)

// NotListedError is the error when the manifest of the artifact set does not list a
// requested artifact (matched with errors.As).
type NotListedError struct {
	Name     string // the artifact: "kubelet-v1.35.4", "pause.oci.tar"
	Manifest string // the manifest: a local path or the mirror's URL
	Mirror   bool   // the set is a mirror's
	// Binary and Release are set for a binary of a release (FilesVersion):
	// "kubelet", "v1.35.4".
	Binary, Release string
	// Held are the artifacts of Binary the set holds, oldest release first.
	Held []string
	// listed are the names the manifest lists, sorted.
	listed []string
}

func (e *NotListedError) Error() string {
	if e.Release == "" {
		if e.Mirror {
			return fmt.Sprintf("artifact %s is not listed in the mirror's manifest %s: check spec.kubernetes.mirrorURL", e.Name, e.Manifest)
		}
		return fmt.Sprintf("artifact %s is not listed in %s: run make artifacts", e.Name, e.Manifest)
	}
	where := e.Manifest
	if e.Mirror {
		where = "the mirror's manifest " + where
	}
	held := "it holds no release of " + e.Binary
	if len(e.Held) > 0 {
		held = "it holds " + strings.Join(e.Held, ", ")
	}
	return fmt.Sprintf("%s is not in the artifact set (%s): supported releases are built by make artifacts; %s", e.Name, where, held)
}

// forRelease is e for the binary bin of release version: Held lists the
// artifacts of bin in the manifest, oldest release first.
func (e *NotListedError) forRelease(bin, version string) *NotListedError {
	r := *e
	r.Binary, r.Release, r.Held = bin, version, nil
	for _, n := range e.listed {
		if v, ok := strings.CutPrefix(n, bin+"-"); ok {
			if _, err := inventory.ParseVersion(v); err == nil {
				r.Held = append(r.Held, n)
			}
		}
	}
	slices.SortFunc(r.Held, func(a, b string) int {
		return inventory.MustVersion(strings.TrimPrefix(a, bin+"-")).Compare(inventory.MustVersion(strings.TrimPrefix(b, bin+"-")))
	})
	return &r
}

func notListed(name, manifest string, mirror bool, sums map[string]string) *NotListedError {
	listed := make([]string, 0, len(sums))
	for n := range sums {
		listed = append(listed, n)
	}
	slices.Sort(listed)
	return &NotListedError{Name: name, Manifest: manifest, Mirror: mirror, listed: listed}
}

// Source says where the artifacts come from.
type Source struct {
	// Dir is a local artifact directory with its SHA256SUMS.
	Dir string
	// MirrorURL is an http(s) mirror with the same layout; files are
	// fetched into CacheDir.
	MirrorURL string
	CacheDir  string
	// ManifestSHA256 pins the sha256 of the mirror's SHA256SUMS.
	ManifestSHA256 string
	// ManifestFile is the operator's copy of the mirror's SHA256SUMS, used
	// instead of fetching it (checked against ManifestSHA256 when set).
	// A mirror needs ManifestSHA256 or ManifestFile.
	ManifestFile string
	// AllowInsecure accepts an http:// mirror (and redirects to http).
	AllowInsecure bool
	// Client fetches from the mirror (default: NewHTTPClient()).
	Client *http.Client
	// Limits (defaults: DefaultMaxManifestBytes, DefaultMaxFileBytes,
	// DefaultStallTimeout).
	MaxManifestBytes int64
	MaxFileBytes     int64
	StallTimeout     time.Duration
	Logger           *slog.Logger
}

// FromInventory is the source an inventory's spec.kubernetes names, with
// cacheDir for a mirror's files.
func FromInventory(k inventory.Kubernetes, cacheDir string) Source {
	return Source{Dir: k.ArtifactDir, MirrorURL: k.MirrorURL, CacheDir: cacheDir,
		ManifestSHA256: k.MirrorManifestSHA256, ManifestFile: k.MirrorManifest, AllowInsecure: k.AllowInsecureMirror}
}

// NewHTTPClient is the default mirror client: proxies from the
// environment, bounded connect, TLS handshake and response header waits.
// Stalled bodies are handled by Source.StallTimeout.
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = DefaultDialTimeout
	t.ResponseHeaderTimeout = DefaultStallTimeout
	return &http.Client{Transport: t}
}

// File is a resolved artifact.
type File struct {
	Path   string // local path
	SHA256 string // hex, as the manifest lists it and as hashed just now
	Size   int64
}

// Versioned is the artifact name of a binary at a version: the artifact set
// holds every supported Kubernetes and etcd release side by side
// ("kubelet-v1.37.2", "etcd-v3.6.16"), so that an upgrade finds both the
// installed and the target release.
func Versioned(name, version string) string { return name + "-" + version }

// ResolveVersion is Resolve for binaries of one release: names are plain
// ("kubelet"), the map is keyed by them, the files are their Versioned
// artifacts.
func (s Source) ResolveVersion(ctx context.Context, version string, names ...string) (map[string]string, error) {
	files, err := s.FilesVersion(ctx, version, names...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(files))
	for n, f := range files {
		out[n] = f.Path
	}
	return out, nil
}

// FilesVersion is Files for binaries of one release (see ResolveVersion).
// A release the set does not hold is a *NotListedError that names the
// artifact and the releases of it the set holds.
func (s Source) FilesVersion(ctx context.Context, version string, names ...string) (map[string]File, error) {
	if version == "" {
		return nil, fmt.Errorf("artifacts %s: no release given", strings.Join(names, ", "))
	}
	vn := make([]string, len(names))
	for i, n := range names {
		vn[i] = Versioned(n, version)
	}
	files, err := s.Files(ctx, vn...)
	if nl, ok := errors.AsType[*NotListedError](err); ok {
		if i := slices.Index(vn, nl.Name); i >= 0 {
			return nil, nl.forRelease(names[i], version)
		}
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]File, len(files))
	for i, n := range names {
		out[n] = files[vn[i]]
	}
	return out, nil
}

// Resolve returns the local path of each named artifact after checking its
// sha256 against the manifest (see Files).
func (s Source) Resolve(ctx context.Context, names ...string) (map[string]string, error) {
	files, err := s.Files(ctx, names...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(files))
	for n, f := range files {
		out[n] = f.Path
	}
	return out, nil
}

// Files returns each named artifact, hashed now and matching the
// manifest: from the directory, or from the mirror (a cached copy is
// re-hashed and reused when it matches, fetched again otherwise).
func (s Source) Files(ctx context.Context, names ...string) (map[string]File, error) {
	for _, n := range names {
		if n == "" || n != filepath.Base(n) || n == "." || n == ".." || strings.ContainsAny(n, `/\`) {
			return nil, fmt.Errorf("artifact name %q: a plain file name is expected", n)
		}
	}
	if s.MirrorURL != "" {
		return s.fromMirror(ctx, names)
	}
	if s.Dir == "" {
		return nil, errors.New("no artifact directory or mirror: set spec.kubernetes.artifactDir or mirrorURL (run make artifacts)")
	}
	mf := filepath.Join(s.Dir, ManifestName)
	sums, _, err := s.readManifest(mf)
	if err != nil {
		return nil, fmt.Errorf("artifact directory %s: %w (run make artifacts)", s.Dir, err)
	}
	out := map[string]File{}
	for _, n := range names {
		want, ok := sums[n]
		if !ok {
			return nil, notListed(n, mf, false, sums)
		}
		f, err := checkFile(filepath.Join(s.Dir, n), want, mf)
		if err != nil {
			return nil, fmt.Errorf("%w (run make artifacts)", err)
		}
		out[n] = f
	}
	return out, nil
}

// VerifyLocal proves one file of an artifact directory against the
// directory's own manifest (SHA256SUMS next to it): its sha256 must be
// the one listed under its name. A file the manifest does not list is a
// *NotListedError, another digest ErrChecksum; both say to run make
// artifacts.
func VerifyLocal(p string) (File, error) {
	dir, name := filepath.Split(filepath.Clean(p))
	files, err := Source{Dir: filepath.Clean(dir)}.Files(context.Background(), name)
	if err != nil {
		return File{}, err
	}
	return files[name], nil
}

// checkFile hashes p and compares it with want, the digest manifest
// lists.
func checkFile(p, want, manifest string) (File, error) {
	st, err := os.Stat(p)
	if err != nil {
		return File{}, fmt.Errorf("artifact %s: %w", p, err)
	}
	got, err := fsutil.FileSHA256(p)
	if err != nil {
		return File{}, fmt.Errorf("artifact %s: %w", p, err)
	}
	if got != want {
		return File{}, fmt.Errorf("%w: %s has sha256 %s, the manifest %s lists %s", ErrChecksum, p, got, manifest, want)
	}
	return File{Path: p, SHA256: want, Size: st.Size()}, nil
}

func (s Source) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s Source) maxManifest() int64 {
	if s.MaxManifestBytes > 0 {
		return s.MaxManifestBytes
	}
	return DefaultMaxManifestBytes
}

func (s Source) maxFile() int64 {
	if s.MaxFileBytes > 0 {
		return s.MaxFileBytes
	}
	return DefaultMaxFileBytes
}

func (s Source) stall() time.Duration {
	if s.StallTimeout > 0 {
		return s.StallTimeout
	}
	return DefaultStallTimeout
}

// readManifest reads and parses a local manifest, at most
// MaxManifestBytes, and returns its sha256 too.
func (s Source) readManifest(p string) (map[string]string, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, s.maxManifest()+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", p, err)
	}
	if int64(len(b)) > s.maxManifest() {
		return nil, "", fmt.Errorf("%s: %w: more than %d bytes", p, ErrTooLarge, s.maxManifest())
	}
	sums, err := ParseManifest(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", p, err)
	}
	return sums, fsutil.SHA256Hex(b), nil
}

func (s Source) fromMirror(ctx context.Context, names []string) (map[string]File, error) {
	base, err := url.Parse(s.MirrorURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("mirror %q is not an http(s) URL: fix spec.kubernetes.mirrorURL", s.MirrorURL)
	}
	if base.User != nil {
		return nil, errors.New("the mirror URL holds credentials: use a mirror without inline credentials")
	}
	if base.Scheme == "http" && !s.AllowInsecure {
		return nil, fmt.Errorf("%w: %s: use https, or set spec.kubernetes.allowInsecureMirror: true for a lab", ErrInsecure, s.MirrorURL)
	}
	if s.ManifestSHA256 == "" && s.ManifestFile == "" {
		return nil, errors.New("a mirror needs the operator's manifest: set spec.kubernetes.mirrorManifestSHA256 (the sha256 of the mirror's SHA256SUMS) or mirrorManifest (a local copy)")
	}
	if s.CacheDir == "" {
		return nil, errors.New("artifacts from a mirror need a cache directory")
	}
	sums, err := s.manifest(ctx, base)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	out := map[string]File{}
	for _, n := range names {
		want, ok := sums[n]
		if !ok {
			return nil, notListed(n, s.manifestWhere(base), true, sums)
		}
		p := filepath.Join(s.CacheDir, n)
		if f, err := checkFile(p, want, s.manifestWhere(base)); err == nil {
			out[n] = f
			continue
		}
		f, err := s.fetchFile(ctx, base, n, p, want)
		if err != nil {
			return nil, err
		}
		out[n] = f
	}
	return out, nil
}

// manifestWhere names the manifest of the mirror at base: the operator's
// copy or the mirror's URL.
func (s Source) manifestWhere(base *url.URL) string {
	if s.ManifestFile != "" {
		return s.ManifestFile
	}
	return join(base, ManifestName)
}

// manifest returns the operator's manifest: the local copy, or the
// mirror's when its sha256 is the pinned one.
func (s Source) manifest(ctx context.Context, base *url.URL) (map[string]string, error) {
	pin := strings.ToLower(s.ManifestSHA256)
	if s.ManifestFile != "" {
		sums, got, err := s.readManifest(s.ManifestFile)
		if err != nil {
			return nil, fmt.Errorf("mirror manifest (spec.kubernetes.mirrorManifest): %w", err)
		}
		if pin != "" && got != pin {
			return nil, fmt.Errorf("%w: %s has sha256 %s, spec.kubernetes.mirrorManifestSHA256 pins %s", ErrManifest, s.ManifestFile, got, pin)
		}
		return sums, nil
	}
	u := join(base, ManifestName)
	var buf bytes.Buffer
	if _, err := s.fetch(ctx, u, s.maxManifest(), &buf); err != nil {
		return nil, err
	}
	if got := fsutil.SHA256Hex(buf.Bytes()); got != pin {
		return nil, fmt.Errorf("%w: %s has sha256 %s, spec.kubernetes.mirrorManifestSHA256 pins %s: the mirror's manifest changed; check the mirror, then update the pin",
			ErrManifest, u, got, pin)
	}
	sums, err := ParseManifest(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("mirror manifest %s: %w", u, err)
	}
	return sums, nil
}

// fetchFile streams name from the mirror to a temporary file next to p,
// hashing it as it arrives, and renames it over p only when it matches.
func (s Source) fetchFile(ctx context.Context, base *url.URL, name, p, want string) (File, error) {
	u := join(base, name)
	s.logger().Info("Fetching artifact", "name", name, "url", u)
	f, err := os.CreateTemp(filepath.Dir(p), "."+name+".part*")
	if err != nil {
		return File{}, fmt.Errorf("artifact cache: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	h := sha256.New()
	n, err := s.fetch(ctx, u, s.maxFile(), io.MultiWriter(f, h))
	if err != nil {
		f.Close()
		return File{}, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		f.Close()
		return File{}, fmt.Errorf("%w: %s from %s has sha256 %s, the manifest lists %s: the mirror serves another file than its pinned manifest names",
			ErrChecksum, name, u, got, want)
	}
	err = f.Chmod(0o755)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		return File{}, fmt.Errorf("artifact cache: storing %s: %w", name, err)
	}
	return File{Path: p, SHA256: want, Size: n}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fetch copies the body of u to w: at most limit bytes, ending when the
// mirror sends nothing for the stall timeout.
func (s Source) fetch(ctx context.Context, u string, limit int64, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stall := s.stall()
	stalled := make(chan struct{})
	var once sync.Once
	timer := time.AfterFunc(stall, func() { once.Do(func() { close(stalled) }); cancel() })
	defer timer.Stop()
	wrap := func(err error) error {
		select {
		case <-stalled:
			return fmt.Errorf("fetching %s: %w: nothing received for %s", u, ErrStalled, stall)
		default:
			return fmt.Errorf("fetching %s: %w", u, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, wrap(err)
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return 0, wrap(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	if resp.ContentLength > limit {
		return 0, fmt.Errorf("fetching %s: %w: %d bytes announced, the limit is %d", u, ErrTooLarge, resp.ContentLength, limit)
	}
	r := &progressReader{r: io.LimitReader(resp.Body, limit+1), timer: timer, stall: stall}
	n, err := io.Copy(w, r)
	if err != nil {
		return n, wrap(err)
	}
	if n > limit {
		return n, fmt.Errorf("fetching %s: %w: more than %d bytes", u, ErrTooLarge, limit)
	}
	return n, nil
}

// client is the configured client with redirects that would downgrade to
// plain http refused (unless allowed).
func (s Source) client() *http.Client {
	c := s.Client
	if c == nil {
		c = NewHTTPClient()
	}
	cc := *c
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" && !s.AllowInsecure {
			return fmt.Errorf("%w: redirected to %s", ErrInsecure, req.URL.Redacted())
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if c.CheckRedirect != nil {
			return c.CheckRedirect(req, via)
		}
		return nil
	}
	return &cc
}

// progressReader pushes the stall deadline back on every read that
// returns data.
type progressReader struct {
	r     io.Reader
	timer *time.Timer
	stall time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.timer.Reset(p.stall)
	}
	return n, err
}

func join(base *url.URL, name string) string {
	u := *base
	u.Path = strings.TrimRight(u.Path, "/") + "/" + url.PathEscape(name)
	u.RawPath = ""
	return u.String()
}

// ParseManifest parses sha256sum output: "<sha256>  <name>" (or
// "<sha256> *<name>") per line; blank lines and # comments are skipped.
func ParseManifest(b []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			return nil, fmt.Errorf("line %d: expected \"<sha256>  <name>\"", n)
		}
		if _, err := hex.DecodeString(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		name := strings.TrimPrefix(f[1], "*")
		if name == "" {
			return nil, fmt.Errorf("line %d: no file name", n)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", n, name)
		}
		out[name] = strings.ToLower(f[0])
	}
	return out, sc.Err()
}
