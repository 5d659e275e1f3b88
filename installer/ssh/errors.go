package ssh

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/pkg/sftp"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrHostKeyMismatch: the host presented a key other than the pinned
	// or known one. Nothing was sent to the host.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrHostKeyUnknown: no pin, known_hosts line or certificate authority
	// vouches for the host key, and accept-new was not asked for.
	ErrHostKeyUnknown = errors.New("host key not known")
	// ErrAuth: the server refused every offered credential.
	ErrAuth = errors.New("ssh authentication failed")
	// ErrSudoPassword: sudo asked for a password (sudo -n refuses to prompt).
	ErrSudoPassword = errors.New("sudo requires a password")
	// ErrConnectionLost: the connection broke during an operation. Such
	// errors are transient: the operation may be retried on a new
	// connection.
	ErrConnectionLost = errors.New("ssh connection lost")
	// ErrChecksumMismatch: the file on the host does not have the sha256
	// of the local file after the transfer.
	ErrChecksumMismatch = errors.New("checksum mismatch after upload")
	// ErrNotStarted marks a command whose session could not be opened: it
	// never ran, so retrying it cannot run it twice.
	ErrNotStarted = errors.New("command did not start")
)

type notStartedError struct{ err error }

func (e *notStartedError) Error() string        { return e.err.Error() }
func (e *notStartedError) Unwrap() error        { return e.err }
func (e *notStartedError) Is(target error) bool { return target == ErrNotStarted }

// HostKeyError describes a host key that was refused.
type HostKeyError struct {
	Host      string   // inventory name of the host
	Addr      string   // address dialled (host:port)
	Presented string   // SHA256 fingerprint of the presented key
	Type      string   // type of the presented key
	Expected  []string // fingerprints that were expected (empty: unknown host)
	Source    string   // where the expectation came from
	err       error    // ErrHostKeyMismatch or ErrHostKeyUnknown
}

func (e *HostKeyError) Error() string {
	if errors.Is(e.err, ErrHostKeyUnknown) {
		return fmt.Sprintf("host key of %s (%s) is not known: it presented %s %s; "+
			"verify that fingerprint out of band (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the host's console), "+
			"then pin it as hostKey in the inventory or add it to known_hosts, or run with --accept-new to trust it on first use",
			e.Host, e.Addr, e.Type, e.Presented)
	}
	return fmt.Sprintf("HOST KEY MISMATCH for %s (%s): expected %s (%s), presented %s %s; nothing was sent to the host. "+
		"If the host was reinstalled, verify the new fingerprint out of band and update %s; otherwise treat this as a possible attack",
		e.Host, e.Addr, strings.Join(e.Expected, " or "), e.Source, e.Type, e.Presented, e.Source)
}

// Unwrap returns the sentinel.
func (e *HostKeyError) Unwrap() error { return e.err }

// ExitError is a remote command that ran and exited non-zero (or was
// killed by a signal).
type ExitError struct {
	Cmd    string
	Status int
	Signal string
	Stderr string // last part of stderr, for the message
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("command %q exited with status %d", shorten(e.Cmd, 80), e.Status)
	if e.Signal != "" {
		s = fmt.Sprintf("command %q killed by signal %s", shorten(e.Cmd, 80), e.Signal)
	}
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// lostError marks an error caused by a broken connection.
type lostError struct{ err error }

func (e *lostError) Error() string        { return "connection lost: " + e.err.Error() }
func (e *lostError) Unwrap() error        { return e.err }
func (e *lostError) Is(target error) bool { return target == ErrConnectionLost }

// IsTransient reports whether err is a network failure after which a retry
// on a new connection may succeed: a lost connection, a reset, a refused or
// timed out dial. Authentication, host key, checksum and command failures
// are never transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	if errors.Is(err, ErrHostKeyMismatch) || errors.Is(err, ErrHostKeyUnknown) ||
		errors.Is(err, ErrAuth) || errors.Is(err, ErrSudoPassword) || errors.Is(err, ErrChecksumMismatch) {
		return false
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return false
	}
	if errors.Is(err, ErrConnectionLost) || errors.Is(err, errPartialDiscarded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, sftp.ErrSSHFxConnectionLost) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// x/crypto/ssh reports a refused direct-tcpip channel on a jump host as
	// an OpenChannelError; the target may still be booting.
	return strings.Contains(err.Error(), "ssh: rejected: connect failed")
}

// Permanent marks err as not to be retried, whatever its cause (e.g. a
// command that may have run before the connection broke). errors.Is and
// errors.As still see the cause.
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
