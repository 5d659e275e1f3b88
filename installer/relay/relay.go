// Package relay moves content-addressed files (named by their sha256)
// between the servers of one center, so that a file crosses the slow link
// through the center's jump host once instead of once per server: the
// first server that needs it (the seed) receives it from the engine into
// its cache, the others copy it from the seed inside the center.
//
// Each server keeps a cache directory (DefaultCacheDir, root only, mode
// 0700) of files named by their sha256. Nothing in it is trusted: a file
// received from a seed is written to a temporary file, checked against
// its sha256 and only then renamed into the cache (Fetch); a file installed
// from the cache is copied and the copy checked before it is renamed over
// the target (Install), and a cache file that does not hash to its name is
// removed.
//
// The transfer needs no long-lived key or trust between servers, and no
// program of tricenter's on them: the seed's server is systemd's
// systemd-socket-activate (present wherever systemd is) running a bash
// handler per connection, the receiver is bash with /dev/tcp and coreutils.
// Serve starts it for one run with a per-run token (NewToken) that goes on
// the session's stdin — never on a command line, in a log, an error or a
// file name. It listens on the seed's own address inside the center,
// serves only the digests the engine offered in this run (Server.Offer),
// and exits when the engine closes it or after a deadline. The token never
// crosses the network either: the server greets each connection with a
// random nonce and the receiver answers sha256(token, nonce).
//
// The bytes cross the center's network in the clear: integrity comes from
// the sha256, access from the token. Content that must stay confidential
// on the wire (an etcd snapshot) is encrypted before it is cached.
//
// Seeds elects a seed per center and digest and makes the other servers
// wait for its upload; Meter counts the bytes the engine sends through each
// jump host. Package phase uses all of it for InstallFiles.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// DefaultCacheDir is where each server keeps its cache.
const DefaultCacheDir = "/var/lib/tricenter/cache/sha256"

// Runner runs a command on a server, as *ssh.Client does.
type Runner interface {
	// Run runs cmd with stdin, stdout and stderr (each may be nil); a
	// non-zero exit is an error whose text includes the end of stderr.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
	// AsRoot wraps cmd so that it runs as root.
	AsRoot(cmd string) string
}

// Errors the relay's operations wrap.
var (
	// ErrNoServer: the seed cannot serve (no systemd-socket-activate).
	ErrNoServer = errors.New("the seed cannot serve files")
	// ErrPortInUse: the port Serve was given is taken on the seed.
	ErrPortInUse = errors.New("port already in use")
	// ErrFetch: the receiver did not get the file from the seed.
	ErrFetch = errors.New("fetching from the seed failed")
	// ErrChecksum: received or cached content does not hash to its name.
	ErrChecksum = errors.New("content does not match its sha256")
	// ErrNotCached: the cache has no file by that digest.
	ErrNotCached = errors.New("not in the cache")
)

// NewToken returns a run's credential: 32 random bytes, hex encoded.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating the relay token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CheckDigest accepts a sha256 in lowercase hex.
func CheckDigest(sum string) error {
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not a sha256 in lowercase hex", sum)
	}
	return nil
}

// CheckCacheDir accepts an absolute, clean directory without white space
// or shell-special characters other than - _ . /.
func CheckCacheDir(dir string) error {
	if !path.IsAbs(dir) || path.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("cache directory %q must be absolute and clean", dir)
	}
	if strings.IndexFunc(dir, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./", r))
	}) >= 0 {
		return fmt.Errorf("cache directory %q may hold only letters, digits and - _ . /", dir)
	}
	return nil
}

// CachePath is the cache file of sum in dir.
func CachePath(dir, sum string) string { return path.Join(dir, sum) }

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return strings.TrimSpace(string(t.b)) }
