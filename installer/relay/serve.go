package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// DefaultDeadline bounds a server's life on the seed when the engine does
// not close it first (e.g. the engine's connection was lost).
const DefaultDeadline = time.Hour

// startTimeout bounds how long Serve waits for the listener, and Offer for
// the server's acknowledgement.
const startTimeout = 30 * time.Second

// serveScript runs on the seed as root under bash, with the cache
// directory, the listen address (ADDR:PORT, [ADDR]:PORT for IPv6), the
// deadline in seconds and the per-connection handler as arguments. The
// token is the first line of stdin; it reaches the handlers through the
// environment of systemd-socket-activate (-E names the variable; its
// value is never an argument). Each further line "offer SHA256" adds a
// digest the handlers may serve and is acknowledged on stdout. The server
// stops when stdin ends (the engine is done) or at the deadline, and
// removes its run directory.
const serveScript = `set -u
c=$1 l=$2 d=$3 x=$4
IFS= read -r TRICENTER_RELAY_KEY || exit 2
export TRICENTER_RELAY_KEY
a=$(command -v systemd-socket-activate || command -v /usr/lib/systemd/systemd-socket-activate) ||
  { echo "tricenter-relay: systemd-socket-activate (systemd) is missing on this server" >&2; exit 69; }
umask 077
mkdir -p -m 0700 -- "$c" && chmod 0700 -- "$c" || exit 3
r=$(mktemp -d -- "$c/.serve.XXXXXXXX") || exit 3
: > "$r/offered"
export TRICENTER_RELAY_CACHE="$c" TRICENTER_RELAY_OFFERED="$r/offered"
timeout -k 5 "$d" "$a" -l "$l" -a --inetd -E PATH -E TRICENTER_RELAY_KEY -E TRICENTER_RELAY_CACHE \
  -E TRICENTER_RELAY_OFFERED bash -c "$x" tricenter-relay-send &
p=$!
exec 4<&0
while IFS= read -r y <&4; do
  case $y in
  "offer "*)
    s=${y#offer }
    if [ ${#s} -eq 64 ] && [ -n "${s##*[!0-9a-f]*}" ]; then echo "$s" >> "$r/offered"; echo "tricenter-relay offered $s"; fi ;;
  esac
done &
q=$!
wait -n
kill "$p" "$q" 2>/dev/null
wait
rm -rf -- "$r"
`

// sendScript is the handler systemd-socket-activate runs per connection,
// the connection on stdin and stdout: greet with a nonce, check the proof
// sha256("TOKEN NONCE") and that the digest was offered in this run, then
// send "tricenter-relay ok SIZE" and the cache file. Refusals are one line
// ("tricenter-relay refused|unknown|missing").
const sendScript = `set -u
n=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'tricenter-relay 1 %s\n' "$n"
IFS=' ' read -r -t 30 x s || exit 0
w=$(printf '%s %s' "$TRICENTER_RELAY_KEY" "$n" | sha256sum)
if [ "$x" != "${w%% *}" ]; then
  echo "tricenter-relay refused"; echo "tricenter-relay: refused a request with a wrong proof" >&2; exit 0
fi
o=
if [ ${#s} -eq 64 ] && [ -n "${s##*[!0-9a-f]*}" ]; then
  while IFS= read -r y; do if [ "$y" = "$s" ]; then o=1; break; fi; done < "$TRICENTER_RELAY_OFFERED"
fi
if [ -z "$o" ]; then echo "tricenter-relay unknown"; exit 0; fi
if ! exec 3< "$TRICENTER_RELAY_CACHE/$s"; then echo "tricenter-relay missing"; exit 0; fi
z=$(stat -L -c %s /dev/fd/3) || exit 0
echo "tricenter-relay ok $z"
exec cat <&3
`

// ServeOptions configure a seed's server.
type ServeOptions struct {
	// Name is the seed's name, for messages.
	Name     string
	CacheDir string // default DefaultCacheDir
	// Listen is the seed's address inside its center and the port.
	Listen netip.AddrPort
	// Token is the run's credential (NewToken).
	Token string
	// Deadline is when the server exits at the latest (default
	// DefaultDeadline).
	Deadline time.Duration
	Logger   *slog.Logger
}

// Server is a seed's server, started by Serve. Its methods are safe for
// concurrent use.
type Server struct {
	o      ServeOptions
	cancel context.CancelFunc
	done   chan struct{}
	err    error // the session's result, once done

	wmu   sync.Mutex // one stdin line at a time
	stdin *io.PipeWriter

	mu      sync.Mutex
	tail    tailWriter // the end of stderr, guarded by mu
	ready   chan struct{}
	isReady bool
	acks    map[string]chan struct{}
	offered map[string]bool
}

// Serve starts a server on the seed through r and returns once it
// listens. The server lives on after ctx ends: Close stops it, and it
// stops by itself at the deadline. ErrPortInUse means another port may
// work; ErrNoServer that this seed cannot serve at all.
func Serve(ctx context.Context, r Runner, o ServeOptions) (*Server, error) {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckCacheDir(o.CacheDir); err != nil {
		return nil, err
	}
	if !o.Listen.IsValid() || o.Listen.Port() == 0 || o.Listen.Addr().IsUnspecified() {
		return nil, fmt.Errorf("serving from %s: listen address %s must be the seed's own address and a port", o.Name, o.Listen)
	}
	if len(o.Token) < 32 || strings.ContainsAny(o.Token, " \n") {
		return nil, errors.New("serving from " + o.Name + ": the token must be NewToken's")
	}
	secs := int64((o.Deadline + time.Second - 1) / time.Second)
	args := []string{o.CacheDir, o.Listen.String(), strconv.FormatInt(secs, 10), sendScript}
	for i, a := range args {
		args[i] = shell.Quote(a)
	}
	cmd := r.AsRoot("bash -c " + shell.Quote(serveScript) + " tricenter-relay-serve " + strings.Join(args, " "))

	// The session outlives the caller that started it (other receivers
	// use it), bounded by the deadline and a little more.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.Deadline+startTimeout)
	pr, pw := io.Pipe()
	s := &Server{o: o, cancel: cancel, done: make(chan struct{}), stdin: pw, ready: make(chan struct{}),
		acks: map[string]chan struct{}{}, offered: map[string]bool{}}
	s.tail.max = 2048
	out := &lineWriter{fn: s.stdoutLine}
	errw := &lineWriter{fn: s.stderrLine}
	go func() {
		err := r.Run(sctx, cmd, pr, out, errw)
		out.flush()
		errw.flush()
		pr.CloseWithError(io.ErrClosedPipe)
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
		cancel()
	}()
	if err := s.writeLine(o.Token); err != nil {
		s.Close()
		return nil, fmt.Errorf("serving from %s: %w", o.Name, s.failure(err))
	}
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case <-s.ready:
		o.Logger.Debug("Relay server listening", "host", o.Name, "listen", o.Listen.String())
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("serving from %s on %s: %w", o.Name, o.Listen, s.failure(nil))
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	case <-t.C:
		s.Close()
		return nil, fmt.Errorf("serving from %s on %s: the listener did not start within %s: %s", o.Name, o.Listen, startTimeout, s.stderrTail())
	}
}

// failure explains why the server's session ended (or a write failed).
func (s *Server) failure(werr error) error {
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	tail := s.stderrTail()
	switch {
	case strings.Contains(tail, "Address already in use"):
		return ErrPortInUse
	case strings.Contains(tail, "systemd-socket-activate (systemd) is missing"):
		return fmt.Errorf("%w: systemd-socket-activate (systemd) is missing there", ErrNoServer)
	case strings.Contains(tail, "Cannot assign requested address"):
		return fmt.Errorf("%w: it has no address %s", ErrNoServer, s.o.Listen.Addr())
	case err != nil:
		return fmt.Errorf("%w: %s", err, tail)
	case werr != nil:
		return werr
	}
	return fmt.Errorf("the server exited: %s", tail)
}

func (s *Server) stderrTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail.String()
}

// stdoutLine hears the script's acknowledgements.
func (s *Server) stdoutLine(l string) {
	sum, ok := strings.CutPrefix(l, "tricenter-relay offered ")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offered[sum] = true
	if ch := s.acks[sum]; ch != nil {
		close(ch)
		delete(s.acks, sum)
	}
}

// stderrLine watches for the listener's "Listening on …" and keeps the
// rest for errors and debug logs (nothing there is secret: the token is
// only in the handlers' environment).
func (s *Server) stderrLine(l string) {
	s.mu.Lock()
	_, _ = s.tail.Write([]byte(l + "\n"))
	if !s.isReady && strings.HasPrefix(l, "Listening on ") {
		s.isReady = true
		close(s.ready)
	}
	s.mu.Unlock()
	s.o.Logger.Debug("Relay server", "host", s.o.Name, "says", l)
}

func (s *Server) writeLine(l string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := io.WriteString(s.stdin, l+"\n")
	return err
}

// Listen is where the server listens.
func (s *Server) Listen() netip.AddrPort { return s.o.Listen }

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Offer lets the server serve sum (from the seed's cache) in this run and
// returns once the server has it.
func (s *Server) Offer(ctx context.Context, sum string) error {
	if err := CheckDigest(sum); err != nil {
		return err
	}
	s.mu.Lock()
	if s.offered[sum] {
		s.mu.Unlock()
		return nil
	}
	ch := s.acks[sum]
	if ch == nil {
		ch = make(chan struct{})
		s.acks[sum] = ch
	}
	s.mu.Unlock()
	if err := s.writeLine("offer " + sum); err != nil {
		return fmt.Errorf("offering sha256:%s on %s: %w", sum[:12], s.o.Name, s.failure(err))
	}
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-s.done:
		return fmt.Errorf("offering sha256:%s on %s: %w", sum[:12], s.o.Name, s.failure(nil))
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("offering sha256:%s on %s: no answer within %s", sum[:12], s.o.Name, startTimeout)
	}
}

// Close stops the server (its listener and the run directory on the seed)
// and waits for it, a few seconds at most. Transfers under way finish.
func (s *Server) Close() error {
	s.wmu.Lock()
	s.stdin.Close()
	s.wmu.Unlock()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cancel()
		<-s.done
	}
	s.cancel()
	return nil
}

// lineWriter calls fn for each line written to it (without the newline).
// Writes come from one goroutine per stream.
type lineWriter struct {
	fn  func(string)
	buf bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		l := string(w.buf.Next(i + 1))
		w.fn(strings.TrimRight(l, "\r\n"))
	}
	if w.buf.Len() > 64<<10 { // a runaway line: drop it
		w.buf.Reset()
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if w.buf.Len() > 0 {
		w.fn(w.buf.String())
		w.buf.Reset()
	}
}
