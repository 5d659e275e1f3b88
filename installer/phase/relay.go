package phase

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/relay"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

// Defaults for RelayOptions.
const (
	DefaultRelayMinSize = 1 << 20
	DefaultRelayPortMin = 61000
	DefaultRelayPortMax = 61999
	DefaultRelayLinger  = 3 * time.Second
)

// RelayOptions configure a run's relay.
type RelayOptions struct {
	// CacheDir is each server's cache (default relay.DefaultCacheDir).
	CacheDir string
	// MinSize: smaller files go to each server directly (default 1 MiB).
	MinSize int64
	// PortMin and PortMax bound the port a seed listens on, chosen at
	// random (default 61000–61999: above Linux's ephemeral range and
	// Kubernetes' NodePorts). Servers of a center must reach each other
	// there.
	PortMin, PortMax int
	// Deadline bounds a seed's server (default relay.DefaultDeadline).
	Deadline time.Duration
	// Linger keeps a seed's server this long after its last receiver, for
	// the next file (default 3 s).
	Linger time.Duration
	// Direct sends every file to every server through its jump host, as
	// without a relay, and only counts the bytes: the comparison
	// bench/relay.sh makes.
	Direct bool
	// Logger defaults to the logger of the first manager using the relay.
	Logger *slog.Logger
}

// Relay makes the files InstallFiles uploads cross each center's jump
// host once: the first server of a center that needs a file (its seed)
// receives it from the engine into its cache (relay.DefaultCacheDir), the
// other servers of the center copy it from the seed inside the center,
// checked against the same sha256, and every server installs the file from
// its own cache (copied and verified). Concurrent requests for a file in a
// center wait for the seed's upload instead of uploading again; when the
// seed fails, or a server cannot fetch from it, that server uploads
// directly (and says so in the log). See package relay for the transfer.
//
// A Relay belongs to one run: NewRelay, WithRelay on the run's context,
// Close when the run ends. It is used only for files uploaded from local
// files (not secret ones, not small ones), on servers with an IP address
// in a center, and never in a dry run. It counts the bytes the engine
// sends through each jump host (JumpBytes).
type Relay struct {
	o     RelayOptions
	token string
	seeds relay.Seeds[*Host]
	meter relay.Meter

	mu      sync.Mutex
	log     *slog.Logger
	servers map[*Host]*seedServer
	dirs    map[*Host]bool // cache directory known to be right
	closed  bool
}

// seedServer is a seed's server and the receivers using it.
type seedServer struct {
	ready chan struct{}
	srv   *relay.Server
	err   error
	users int
	timer *time.Timer
}

// NewRelay returns a run's relay with its token.
func NewRelay(o RelayOptions) (*Relay, error) {
	if o.CacheDir == "" {
		o.CacheDir = relay.DefaultCacheDir
	}
	if err := relay.CheckCacheDir(o.CacheDir); err != nil {
		return nil, err
	}
	if o.MinSize <= 0 {
		o.MinSize = DefaultRelayMinSize
	}
	if o.PortMin <= 0 {
		o.PortMin = DefaultRelayPortMin
	}
	if o.PortMax <= 0 {
		o.PortMax = DefaultRelayPortMax
	}
	if o.PortMin > o.PortMax || o.PortMax > 65535 || o.PortMin < 1024 {
		return nil, fmt.Errorf("relay ports %d–%d: give a range inside 1024–65535", o.PortMin, o.PortMax)
	}
	if o.Deadline <= 0 {
		o.Deadline = relay.DefaultDeadline
	}
	if o.Linger <= 0 {
		o.Linger = DefaultRelayLinger
	}
	tok, err := relay.NewToken()
	if err != nil {
		return nil, err
	}
	return &Relay{o: o, token: tok, log: o.Logger, servers: map[*Host]*seedServer{}, dirs: map[*Host]bool{}}, nil
}

type relayKey struct{}

// WithRelay returns ctx carrying r: InstallFiles under it uses the relay.
func WithRelay(ctx context.Context, r *Relay) context.Context {
	return context.WithValue(ctx, relayKey{}, r)
}

// RelayFrom returns the relay ctx carries, or nil.
func RelayFrom(ctx context.Context) *Relay {
	r, _ := ctx.Value(relayKey{}).(*Relay)
	return r
}

// StartRelay is the engine's one line for a run: a new relay on ctx and
// the function that closes it (after the run, before the manager closes)
// and returns the bytes through each jump host. When the relay cannot be
// made (bad options) it logs why and the run uploads directly.
func StartRelay(ctx context.Context, o RelayOptions) (context.Context, func() []relay.JumpBytes) {
	r, err := NewRelay(o)
	if err != nil {
		if o.Logger != nil {
			o.Logger.Warn("Uploading every file to every server directly: no relay", "err", err)
		}
		return ctx, func() []relay.JumpBytes { return nil }
	}
	return WithRelay(ctx, r), func() []relay.JumpBytes {
		r.Close()
		return r.JumpBytes()
	}
}

// relayFor is the relay h's uploads use under ctx: nil without one, after
// Close, and in a dry run.
func relayFor(ctx context.Context, h *Host) *Relay {
	r := RelayFrom(ctx)
	if r == nil || h.DryRun() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.log == nil {
		r.log = h.m.Logger
	}
	return r
}

func (r *Relay) logger() *slog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.log
}

// JumpBytes are the bytes sent through each jump host so far.
func (r *Relay) JumpBytes() []relay.JumpBytes { return r.meter.Report() }

// Close stops the seeds' servers and logs the bytes sent through each
// jump host. The relay is not used afterwards.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	servers := r.servers
	r.servers = map[*Host]*seedServer{}
	r.mu.Unlock()
	for h, s := range servers {
		<-s.ready
		r.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		r.mu.Unlock()
		if s.srv != nil {
			r.logger().Debug("Stopping the relay server", "host", h.Name)
			s.srv.Close()
		}
	}
	for _, j := range r.meter.Report() {
		r.logger().Info("Bytes through jump host", "jump", j.Jump, "bytes", j.Bytes, "sent", progress.Bytes(j.Bytes),
			"set", progress.Bytes(j.Set), "files", j.Files, "ratio", fmt.Sprintf("%.2f", j.Ratio()))
	}
	return nil
}

// need records that h lacked w's content (for the set behind its jump
// host; servers reached directly are not counted).
func (r *Relay) need(h *Host, w wanted) {
	if j := jumpOf(h); j != "" {
		r.meter.Need(j, w.sum, w.size)
	}
}

// jumpOf names the jump host in front of h ("" when reached directly).
func jumpOf(h *Host) string {
	if h.Endpoint.Jump == nil {
		return ""
	}
	return h.Endpoint.Jump.String()
}

// carries reports whether w goes through the relay on h: a local,
// non-secret file of at least MinSize whose content h lacks, on a server
// with an IP address in a center, reached through a jump host (a server
// the engine reaches directly gains nothing from a copy inside its
// center).
func (r *Relay) carries(h *Host, w wanted, st remoteFile) bool {
	return !r.o.Direct && w.f.Local != "" && !w.f.Secret && w.size >= r.o.MinSize && jumpOf(h) != "" &&
		h.Center != nil && h.Center.Name != "" && h.Addr().IsValid() && !(st.exists && st.same)
}

// cacheState reads which of the carried files h's cache holds.
func (r *Relay) cacheState(ctx context.Context, h *Host, ws []wanted) (relay.CacheState, error) {
	files := map[string]int64{}
	for _, w := range ws {
		files[w.sum] = w.size
	}
	var st relay.CacheState
	err := h.m.retry(ctx, h, "reading the cache", func(c *ssh.Client) error {
		var err error
		st, err = relay.Query(ctx, c, r.o.CacheDir, files)
		return err
	})
	if err == nil && st.DirOK {
		r.mu.Lock()
		r.dirs[h] = true
		r.mu.Unlock()
	}
	return st, err
}

// install puts w on h from h's cache, filling the cache first when it
// lacks the file (inCache: its size is there) and again when the cache
// file does not verify.
func (r *Relay) install(ctx context.Context, h *Host, w wanted, inCache bool) (FileResult, error) {
	res := FileResult{Changed: true, SHA256: w.sum, Size: w.size}
	recorded := map[string]bool{}
	if !inCache {
		if err := r.fill(ctx, h, w); err != nil {
			return res, err
		}
	}
	err := h.installCached(ctx, r, w, recorded)
	if errors.Is(err, relay.ErrChecksum) || errors.Is(err, relay.ErrNotCached) {
		r.logger().Warn("The cached copy is missing or does not match its digest: fetching it again", "host", h.Name,
			"path", w.f.Path, "sha256", w.sum, "err", err)
		if err := r.fill(ctx, h, w); err != nil {
			return res, err
		}
		err = h.installCached(ctx, r, w, recorded)
	}
	return res, err
}

// fill gets w's content into h's cache: from the engine when h is the
// seed of its center, from the seed otherwise, and from the engine again
// when the seed failed or cannot be fetched from.
func (r *Relay) fill(ctx context.Context, h *Host, w wanted) error {
	if err := r.prepareDir(ctx, h); err != nil {
		return err
	}
	r.need(h, w)
	center := h.Center.Name
	for attempt := 0; ; attempt++ {
		r.logger().Debug("Getting the file in the center", "host", h.Name, "center", center, "path", w.f.Path, "sha256", w.sum)
		src, mine, err := r.seeds.Claim(ctx, center, w.sum, h)
		switch {
		case errors.Is(err, relay.ErrSeedFailed):
			r.logger().Warn("The seed did not receive the file: uploading it directly", "host", h.Name, "center", center,
				"path", w.f.Path, "sha256", w.sum)
			return h.uploadToCache(ctx, r, w)
		case err != nil:
			return err
		case mine:
			r.logger().Debug("Seeding the center", "host", h.Name, "center", center, "path", w.f.Path, "sha256", w.sum)
			err := h.uploadToCache(ctx, r, w)
			r.seeds.Settle(center, w.sum, h, err == nil)
			return err
		case src == h:
			return nil // another call of h's seeded it meanwhile
		}
		err = r.fetch(ctx, src, h, w)
		if err == nil || ctx.Err() != nil {
			return err
		}
		r.seeds.Drop(center, w.sum, src)
		if attempt >= 1 {
			r.logger().Warn("Fetching from the seed failed: uploading the file directly", "host", h.Name, "seed", src.Name,
				"path", w.f.Path, "sha256", w.sum, "err", err)
			return h.uploadToCache(ctx, r, w)
		}
		r.logger().Warn("Fetching from the seed failed: electing another seed", "host", h.Name, "seed", src.Name,
			"path", w.f.Path, "sha256", w.sum, "err", err)
	}
}

// prepareDir creates h's cache directory once per run when the query did
// not find it right.
func (r *Relay) prepareDir(ctx context.Context, h *Host) error {
	r.mu.Lock()
	ok := r.dirs[h]
	r.mu.Unlock()
	if ok {
		return nil
	}
	err := h.Mutate(ctx, "create the file cache "+r.o.CacheDir, func(ctx context.Context) error {
		return h.m.retry(ctx, h, "creating the file cache", func(c *ssh.Client) error {
			return relay.PrepareDir(ctx, c, r.o.CacheDir)
		})
	})
	if err == nil {
		r.mu.Lock()
		r.dirs[h] = true
		r.mu.Unlock()
	}
	return err
}

// fetch copies w's content from src's cache into h's.
func (r *Relay) fetch(ctx context.Context, src, h *Host, w wanted) error {
	srv, release, err := r.server(ctx, src)
	if err != nil {
		return err
	}
	defer release()
	if err := srv.Offer(ctx, w.sum); err != nil {
		return err
	}
	action := fmt.Sprintf("fetch the content of %s from %s into the cache (%s)", w.f.Path, src.Name,
		describeContent(w.sum, w.size, false))
	return h.Mutate(ctx, action, func(ctx context.Context) error {
		h.Logf("fetching %s from %s", w.f.Path, src.Name)
		return h.m.retry(ctx, h, "fetching "+w.f.Path+" from "+src.Name, func(c *ssh.Client) error {
			return relay.Fetch(ctx, c, relay.FetchOptions{Name: h.Name, Seed: src.Name, CacheDir: r.o.CacheDir,
				From: srv.Listen(), Token: r.token, SHA256: w.sum, Size: w.size})
		})
	})
}

// server returns src's server, starting it when it has none, and a
// release to call when the fetch is done: the server stops Linger after
// its last receiver (or at Close).
func (r *Relay) server(ctx context.Context, src *Host) (*relay.Server, func(), error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil, errors.New("the relay is closed")
	}
	s := r.servers[src]
	if s != nil && isClosed(s.ready) && s.srv != nil && isClosed(s.srv.Done()) {
		s = nil // it stopped (its deadline): start another
	}
	start := s == nil
	if start {
		s = &seedServer{ready: make(chan struct{})}
		r.servers[src] = s
	}
	s.users++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	r.mu.Unlock()
	release := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		s.users--
		if s.users > 0 || s.srv == nil || r.servers[src] != s {
			return
		}
		s.timer = time.AfterFunc(r.o.Linger, func() {
			r.mu.Lock()
			if s.users > 0 || r.servers[src] != s {
				r.mu.Unlock()
				return
			}
			delete(r.servers, src)
			r.mu.Unlock()
			r.logger().Debug("Stopping the relay server: its receivers are done", "host", src.Name)
			s.srv.Close()
		})
	}
	if start {
		srv, err := r.startServer(ctx, src)
		r.mu.Lock()
		s.srv, s.err = srv, err
		if err != nil && !errors.Is(err, relay.ErrNoServer) && r.servers[src] == s {
			delete(r.servers, src) // the next fetch tries again
		}
		r.mu.Unlock()
		close(s.ready)
	} else {
		select {
		case <-s.ready:
		case <-ctx.Done():
			release()
			return nil, nil, ctx.Err()
		}
	}
	if s.err != nil {
		release()
		return nil, nil, s.err
	}
	return s.srv, release, nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// startServer starts src's server on a free port of the range, through
// the gate (it is a listener on the seed for this run).
func (r *Relay) startServer(ctx context.Context, src *Host) (*relay.Server, error) {
	addr := src.Addr()
	var srv *relay.Server
	err := src.Mutate(ctx, "serve cached files to "+src.Center.Name+" until this run's receivers are done", func(ctx context.Context) error {
		c, err := src.Client(ctx)
		if err != nil {
			return err
		}
		for try := 0; ; try++ {
			port := r.o.PortMin + rand.IntN(r.o.PortMax-r.o.PortMin+1)
			srv, err = relay.Serve(ctx, c, relay.ServeOptions{Name: src.Name, CacheDir: r.o.CacheDir,
				Listen: netip.AddrPortFrom(addr, uint16(port)), Token: r.token, Deadline: r.o.Deadline, Logger: r.logger()})
			if err == nil || !errors.Is(err, relay.ErrPortInUse) || try >= 7 {
				return err
			}
		}
	})
	if err != nil {
		return nil, err
	}
	r.logger().Info("Serving cached files to the center", "host", src.Name, "center", src.Center.Name, "listen", srv.Listen().String())
	return srv, nil
}

// uploadToCache uploads w's content into h's cache through h's jump host.
func (h *Host) uploadToCache(ctx context.Context, r *Relay, w wanted) error {
	o := FileOptions{Mode: 0o600, DirMode: 0o700, SHA256: w.sum}
	action := fmt.Sprintf("upload the content of %s into the cache (%s)", w.f.Path, describeContent(w.sum, w.size, false))
	_, err := h.put(ctx, relay.CachePath(r.o.CacheDir, w.sum), w.sum, w.size, o, r.opener(h, w.f.Local), action)
	return err
}

// uploadLocal is UploadFile for InstallFiles, counting the bytes sent
// through h's jump host when a relay is in use.
func (h *Host) uploadLocal(ctx context.Context, r *Relay, w wanted, st remoteFile) (FileResult, error) {
	if r == nil {
		return h.UploadFile(ctx, w.f.Local, w.f.Path, w.f.options())
	}
	o := w.f.options()
	if _, _, err := h.localFile(w.f.Local, o); err != nil {
		return FileResult{}, err
	}
	if !(st.exists && st.same) {
		r.need(h, w)
	}
	return h.put(ctx, w.f.Path, w.sum, w.size, o, r.opener(h, w.f.Local),
		"upload "+w.f.Path+" ("+describeContent(w.sum, w.size, o.Secret)+")")
}

// opener opens a local file for put, counting what is read from it (what
// is sent) as bytes through h's jump host.
func (r *Relay) opener(h *Host, local string) func() (io.ReadCloser, error) {
	jump := jumpOf(h)
	return func() (io.ReadCloser, error) {
		f, err := os.Open(local)
		if err != nil {
			return nil, err
		}
		if jump == "" {
			return f, nil
		}
		return &meteredFile{File: f, add: func(n int64) { r.meter.Sent(jump, n) }}, nil
	}
}

// meteredFile counts what is read from a file; it seeks like the file
// (a resumed upload skips what the host has without counting it).
type meteredFile struct {
	*os.File
	add func(int64)
}

func (f *meteredFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	if n > 0 {
		f.add(int64(n))
	}
	return n, err
}

// installCached installs w from h's cache through the gate (recorded once
// per InstallFiles file however many attempts it takes).
func (h *Host) installCached(ctx context.Context, r *Relay, w wanted, recorded map[string]bool) error {
	release, err := h.pathTurn(ctx, w.f.Path)
	if err != nil {
		return err
	}
	defer release()
	o := w.f.options()
	action := fmt.Sprintf("install %s from the cache (%s)", w.f.Path, describeContent(w.sum, w.size, false))
	do := func(ctx context.Context) error {
		return h.m.retry(ctx, h, "installing "+w.f.Path+" from the cache", func(c *ssh.Client) error {
			return relay.Install(ctx, c, relay.InstallOptions{CacheDir: r.o.CacheDir, SHA256: w.sum, Path: w.f.Path,
				Mode: o.Mode, Owner: o.Owner, DirMode: o.DirMode})
		})
	}
	if recorded[action] {
		return do(ctx)
	}
	recorded[action] = true
	return h.Mutate(ctx, action, do)
}

// pathTurn waits for h's turn at a remote path, the one put takes: writes
// of one path never overlap.
func (h *Host) pathTurn(ctx context.Context, remote string) (func(), error) {
	h.mu.Lock()
	if h.paths == nil {
		h.paths = map[string]chan struct{}{}
	}
	turn := h.paths[remote]
	if turn == nil {
		turn = make(chan struct{}, 1)
		h.paths[remote] = turn
	}
	h.mu.Unlock()
	if err := acquire(ctx, turn); err != nil {
		return nil, err
	}
	return func() { <-turn }, nil
}
