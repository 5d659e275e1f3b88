package backup

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Timeouts of the calls to one source.
const (
	// DialTimeout bounds connecting to a source.
	DialTimeout = 5 * time.Second
	// callTimeout bounds the status, member list and count calls.
	callTimeout = 5 * time.Second
)

// snapshotAlign: etcd's database is a whole number of 512-byte blocks
// (etcdutl restore tells a stream with its sha256 from a bare database
// file this way).
const snapshotAlign = 512

// Take takes one snapshot as cfg says: it tries cfg.Sources in order and
// takes the snapshot from the first that answers its status over mutual
// TLS, is a voting member, knows a leader, answers as the member its
// Source names, and serves a linearizable read; it logs why it skips the
// others. From that member it reads, in one linearizable request, the
// revision and the number of keys at it, then streams
// Maintenance().Snapshot through Seal straight into cfg.Dir (the plain
// snapshot never touches the disk), checking the sha256 etcd sends at
// the end of the stream. Then it prunes the directory to cfg.Keep
// snapshots.
//
// A source that fails is skipped for the next; a local failure (the
// directory, the disk) or cfg's timeout ends Take. When every source
// fails the error names each and why. When the snapshot is stored but
// pruning fails, Take returns its Meta and the error. now is the clock
// (nil: time.Now). Take never logs key material or snapshot contents.
func Take(ctx context.Context, cfg *Config, log *slog.Logger, now func() time.Time) (Meta, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return Meta{}, fmt.Errorf("snapshot configuration: %w", err)
	}
	to, err := ParseRecipient(cfg.Recipient)
	if err != nil {
		return Meta{}, err
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return Meta{}, err
	}
	timeout, err := cfg.TimeoutDuration()
	if err != nil {
		return Meta{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := Dir{Path: cfg.Dir}

	var errs []error
	for _, src := range cfg.Sources {
		log.Info("Trying etcd member", "member", src.Name, "center", src.Center, "url", src.URL)
		m, err := takeFrom(ctx, cfg, src, tc, to, d, log, now)
		if err == nil {
			removed, perr := d.Prune(cfg.Keep)
			if len(removed) > 0 {
				log.Info("Pruned snapshot directory", "dir", d.Path, "keep", cfg.Keep, "removed", removed)
			}
			if perr != nil {
				return m, fmt.Errorf("snapshot %s stored, but pruning %s: %w", m.ID, d.Path, perr)
			}
			return m, nil
		}
		var le *localError
		if errors.As(err, &le) {
			return Meta{}, le.err
		}
		err = fmt.Errorf("%s (%s, %s): %w", src.Name, src.Center, src.URL, err)
		errs = append(errs, err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Meta{}, fmt.Errorf("no snapshot within the timeout of %v: %w", timeout, errors.Join(errs...))
		} else if ctx.Err() != nil {
			return Meta{}, fmt.Errorf("interrupted: %w", errors.Join(errs...))
		}
		log.Warn("Skipping etcd member", "member", src.Name, "url", src.URL, "reason", err.Error())
	}
	return Meta{}, fmt.Errorf("no etcd member gave a snapshot: %w", errors.Join(errs...))
}

// localError is a failure on this server: trying another source would
// not help.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// TLSConfig reads the CA bundle and the client certificate cfg names;
// errors name the field and the file.
func (c *Config) TLSConfig() (*tls.Config, error) {
	ca, err := os.ReadFile(c.CACert)
	if err != nil {
		return nil, fmt.Errorf("caCert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("caCert: %s holds no PEM certificate", c.CACert)
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("cert %s and key %s: %w", c.Cert, c.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// usable says why a member's status rules it out as a source, or nil.
func usable(st *clientv3.StatusResponse) error {
	switch {
	case st.IsLearner:
		return errors.New("it is a learner")
	case st.Leader == 0:
		return errors.New("it knows no leader")
	}
	return nil
}

func takeFrom(ctx context.Context, cfg *Config, src Source, tc *tls.Config, to *ecdh.PublicKey, d Dir, log *slog.Logger, now func() time.Time) (Meta, error) {
	if err := probe(ctx, src.URL, tc); err != nil {
		return Meta{}, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{src.URL}, TLS: tc.Clone(), DialTimeout: DialTimeout,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
		Logger: zap.NewNop(), Context: ctx,
	})
	if err != nil {
		return Meta{}, fmt.Errorf("connecting: %w", err)
	}
	defer cli.Close()

	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := cli.Status(cctx, src.URL)
	if err != nil {
		return Meta{}, fmt.Errorf("status: %w", err)
	}
	if err := usable(st); err != nil {
		return Meta{}, err
	}
	if len(st.Errors) > 0 {
		log.Warn("Etcd member reports errors", "member", src.Name, "errors", st.Errors)
	}
	ml, err := cli.MemberList(cctx)
	if err != nil {
		return Meta{}, fmt.Errorf("member list: %w", err)
	}
	name := ""
	for _, m := range ml.Members {
		if m.ID == st.Header.MemberId {
			name = m.Name
		}
	}
	if name != src.Name {
		return Meta{}, fmt.Errorf("it answers as member %q (id %x), not %q", name, st.Header.MemberId, src.Name)
	}
	// Revision and key count in one linearizable read of the whole key
	// space: the count is the number of keys at that revision.
	cnt, err := cli.Get(cctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return Meta{}, fmt.Errorf("counting keys (a linearizable read): %w", err)
	}

	takenAt := now().UTC().Truncate(time.Second)
	id, err := SnapshotID(cfg.Cluster, takenAt, src.Name)
	if err != nil {
		return Meta{}, &localError{err}
	}
	m := Meta{ID: id, Format: Format, Cluster: cfg.Cluster, TakenAt: takenAt, Member: src.Name, MemberCenter: src.Center,
		StoredOn: cfg.StoredOn, StoredCenter: cfg.StoredCenter, Revision: cnt.Header.Revision, Keys: cnt.Count,
		EtcdVersion: st.Version, Recipient: EncodeRecipient(to)}
	log.Info("Taking snapshot", "id", id, "member", src.Name, "revision", m.Revision, "keys", m.Keys, "etcdVersion", st.Version)
	start := time.Now()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return Meta{}, fmt.Errorf("snapshot: %w", err)
	}
	defer rc.Close()
	stream := &snapshotStream{r: rc, h: sha256.New()}
	stored, err := d.Write(m, func(w io.Writer) (int64, error) { return Seal(w, stream, to) })
	if err != nil {
		if stream.err != nil {
			return Meta{}, fmt.Errorf("snapshot stream: %w", stream.err)
		}
		return Meta{}, &localError{fmt.Errorf("storing snapshot %s: %w", id, err)}
	}
	log.Info("Snapshot stored", "id", stored.ID, "dir", d.Path, "plainBytes", stored.PlainBytes,
		"sealedBytes", stored.SealedBytes, "took", time.Since(start).Round(time.Millisecond))
	return stored, nil
}

// snapshotStream passes etcd's snapshot stream through and checks its
// end: the last 32 bytes are the sha256 of the database before them,
// whose size is a multiple of 512. A failure of the stream, or of that
// check, is kept in err (and returned by Read instead of io.EOF).
type snapshotStream struct {
	r    io.Reader
	h    hash.Hash
	tail [sha256.Size]byte
	nt   int // bytes in tail
	n    int64
	err  error
}

func (s *snapshotStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if n > 0 {
		s.n += int64(n)
		s.push(p[:n])
	}
	switch {
	case errors.Is(err, io.EOF):
		if cerr := s.check(); cerr != nil {
			s.err = cerr
			return n, cerr
		}
		return n, io.EOF
	case err != nil:
		s.err = err
	}
	return n, err
}

// push hashes all but the last sha256.Size bytes seen so far and keeps
// those in tail.
func (s *snapshotStream) push(b []byte) {
	if s.nt+len(b) <= len(s.tail) {
		s.nt += copy(s.tail[s.nt:], b)
		return
	}
	hashN := s.nt + len(b) - len(s.tail) // how many leave the window
	fromTail := min(hashN, s.nt)
	s.h.Write(s.tail[:fromTail])
	s.h.Write(b[:hashN-fromTail])
	var buf [2 * sha256.Size]byte
	keep := append(append(buf[:0], s.tail[fromTail:s.nt]...), b[hashN-fromTail:]...)
	s.nt = copy(s.tail[:], keep)
}

func (s *snapshotStream) check() error {
	db := s.n - sha256.Size
	if db <= 0 || db%snapshotAlign != 0 {
		return fmt.Errorf("the stream ended after %d bytes: not a database followed by its sha256", s.n)
	}
	if string(s.h.Sum(nil)) != string(s.tail[:]) {
		return errors.New("the sha256 at the end of the stream does not match the database")
	}
	return nil
}

// probeRead bounds the wait for the member's answer to the handshake.
const probeRead = time.Second

// probe opens one TLS connection to the source with the client
// certificate, so that an unreachable member or a refused certificate is
// reported as such (gRPC only says its deadline passed). With TLS 1.3 the
// server checks the client certificate after the client considers the
// handshake done: its refusal arrives as an alert on the first read,
// while an accepting member sends its HTTP/2 settings or nothing.
func probe(ctx context.Context, rawURL string, tc *tls.Config) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return err
	}
	c := tc.Clone()
	c.ServerName = host
	c.NextProtos = []string{"h2"}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn, err := (&tls.Dialer{NetDialer: &net.Dialer{}, Config: c}).DialContext(dctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(probeRead))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) {
			return nil
		}
		var alert tls.AlertError
		if errors.As(err, &alert) || strings.Contains(err.Error(), "remote error") {
			return fmt.Errorf("the member refused the client certificate: %w", err)
		}
		return fmt.Errorf("connecting: %w", err)
	}
	return nil
}
