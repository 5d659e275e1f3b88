package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Sentinel errors; test with errors.Is. Every error returned by this
// package names the server and wraps at most one of them.
var (
	// ErrAuth: the BMC rejected the user name or password, or the user
	// lacks the privilege for the command.
	ErrAuth = errors.New("the BMC rejected the credentials")
	// ErrUnreachable: nothing answers IPMI at the address (connection
	// refused, no route, unknown host).
	ErrUnreachable = errors.New("the BMC is unreachable")
	// ErrTimeout: the BMC did not answer before the deadline or the retry
	// budget ran out.
	ErrTimeout = errors.New("the BMC did not answer in time")
	// ErrUnsupported: the BMC answered with a completion code saying it
	// does not support the command or its parameters. The
	// *CompletionError in the chain names the code.
	ErrUnsupported = errors.New("the BMC does not support the command")
	// ErrBusy: the BMC reported insufficient resources or being busy;
	// such errors are retried within the retry budget.
	ErrBusy = errors.New("the BMC is busy or out of resources")
	// ErrNoCipherSuite: the BMC accepted none of the configured cipher
	// suites.
	ErrNoCipherSuite = errors.New("the BMC accepts none of the configured cipher suites")
	// ErrConfig: the BMC's inventory entry is unusable.
	ErrConfig = errors.New("invalid BMC configuration")
)

// CompletionError is an IPMI completion code other than "OK".
type CompletionError struct {
	Command string
	Code    uint8
}

func (e *CompletionError) Error() string {
	return fmt.Sprintf("%s: completion code 0x%02X (%s)", e.Command, e.Code, completionName(e.Code))
}

// Is makes errors.Is(err, ErrUnsupported), ErrBusy or ErrAuth true for the
// codes that mean so.
func (e *CompletionError) Is(target error) bool {
	switch target {
	case ErrUnsupported:
		return unsupportedCode(e.Code)
	case ErrBusy:
		return busyCode(e.Code)
	case ErrAuth:
		return e.Code == 0xD4
	}
	return false
}

func unsupportedCode(c uint8) bool {
	switch c {
	case 0x80, 0xC1, 0xC2, 0xC9, 0xCC, 0xCD, 0xD5, 0xD6:
		return true
	}
	return false
}

func busyCode(c uint8) bool {
	switch c {
	case 0xC0, 0xC3, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2:
		return true
	}
	return false
}

var completionNames = map[uint8]string{
	0x80: "parameter not supported",
	0xC0: "node busy",
	0xC1: "invalid command",
	0xC2: "command invalid for this LUN",
	0xC3: "timeout while processing the command",
	0xC4: "out of space",
	0xC5: "reservation cancelled or invalid",
	0xC6: "request data truncated",
	0xC7: "request data length invalid",
	0xC8: "request data field length limit exceeded",
	0xC9: "parameter out of range",
	0xCA: "cannot return the number of requested data bytes",
	0xCB: "requested sensor, data or record not present",
	0xCC: "invalid data field in request",
	0xCD: "command illegal for this sensor or record type",
	0xCE: "command response could not be provided",
	0xCF: "cannot execute a duplicated request",
	0xD0: "SDR repository in update mode",
	0xD1: "device in firmware update mode",
	0xD2: "BMC initialization in progress",
	0xD3: "destination unavailable",
	0xD4: "insufficient privilege level",
	0xD5: "command not supported in present state",
	0xD6: "sub-function disabled or unavailable",
	0xFF: "unspecified error",
}

func completionName(c uint8) string {
	if n, ok := completionNames[c]; ok {
		return n
	}
	return "device or command specific"
}

// rmcpStatusNames are the RMCP+ session setup status codes (IPMI 2.0
// table 13-15).
var rmcpStatusNames = map[uint8]string{
	0x01: "insufficient resources to create a session",
	0x02: "invalid session ID",
	0x03: "invalid payload type",
	0x04: "invalid authentication algorithm",
	0x05: "invalid integrity algorithm",
	0x06: "no matching authentication payload",
	0x07: "no matching integrity payload",
	0x08: "inactive session ID",
	0x09: "invalid role",
	0x0A: "unauthorized role or privilege level requested",
	0x0B: "insufficient resources to create a session at the requested role",
	0x0C: "invalid name length",
	0x0D: "unauthorized name",
	0x0E: "unauthorized GUID",
	0x0F: "invalid integrity check value",
	0x10: "invalid confidentiality algorithm",
	0x11: "no cipher suite match with proposed security algorithms",
	0x12: "illegal or unrecognized parameter",
}

// SessionError is an RMCP+ status code from session setup.
type SessionError struct {
	Step   string
	Status uint8
}

func (e *SessionError) Error() string {
	n := rmcpStatusNames[e.Status]
	if n == "" {
		n = "unknown status"
	}
	msg := fmt.Sprintf("%s: RMCP+ status 0x%02X (%s)", e.Step, e.Status, n)
	switch {
	case e.Is(ErrAuth):
		msg += ": " + ErrAuth.Error()
	case e.Is(ErrBusy):
		msg += ": " + ErrBusy.Error()
	}
	return msg
}

// Is maps session setup statuses onto the sentinels.
func (e *SessionError) Is(target error) bool {
	switch target {
	case ErrAuth:
		switch e.Status {
		case 0x09, 0x0A, 0x0C, 0x0D, 0x0E, 0x0F:
			return true
		}
	case ErrBusy:
		return e.Status == 0x01 || e.Status == 0x0B
	}
	return false
}

// suiteRejected reports whether an Open Session error means "this cipher
// suite is not accepted": an algorithm status, or (as ipmi_sim does) a
// short error reply go-ipmi cannot unpack.
func suiteRejected(err error) bool {
	var se *SessionError
	if errors.As(err, &se) {
		switch se.Status {
		case 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12:
			return true
		}
		return false
	}
	return errors.Is(err, types.ErrUnpackedDataTooShort)
}

// classify converts a go-ipmi error into this package's vocabulary: a
// *CompletionError or *SessionError, or the error joined with a sentinel.
// The result never contains the password: go-ipmi errors carry none.
func classify(step string, err error) error {
	if err == nil {
		return nil
	}
	var re *types.ResponseError
	if errors.As(err, &re) {
		return &CompletionError{Command: step, Code: uint8(re.CompletionCode())}
	}
	var rs *types.RmcpStatusError
	if errors.As(err, &rs) {
		return &SessionError{Step: step, Status: uint8(rs.StatusCode())}
	}
	switch {
	case errors.Is(err, client.ErrRAKPAuthentication):
		return fmt.Errorf("%s: %w (wrong password, or wrong user name on a BMC that hides which)", step, ErrAuth)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w: connection refused (no IPMI service at this address and port)", step, ErrUnreachable)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%s: %w: no route to the BMC", step, ErrUnreachable)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("%s: %w: cannot resolve %s", step, ErrUnreachable, dnsErr.Name)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) || strings.Contains(err.Error(), "no datagram matched") ||
		strings.Contains(err.Error(), "no matching IPMI response") {
		return fmt.Errorf("%s: %w", step, ErrTimeout)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", step, context.Canceled)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// retryable reports whether another attempt may succeed.
func retryable(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrBusy)
}
