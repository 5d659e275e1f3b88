package bmc

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Target is one server's BMC with its credentials resolved.
type Target struct {
	// Server is the inventory name of the server; errors and logs use it.
	Server  string
	Address string
	Port    int
	User    string
	// Password is the resolved secret. It is never logged, printed or put
	// in an error; String and LogValue leave it out.
	Password string
	// CipherSuites are tried in order; see AllowedCipherSuites.
	CipherSuites []int
}

// String names the server and its BMC address, without credentials.
func (t Target) String() string { return t.Server + " (BMC " + t.Addr() + ")" }

// LogValue keeps the password out of structured logs.
func (t Target) LogValue() slog.Value {
	return slog.GroupValue(slog.String("server", t.Server), slog.String("bmc", t.Addr()))
}

// GoString keeps the password out of %#v.
func (t Target) GoString() string { return "bmc.Target{" + t.String() + "}" }

// Addr is "address:port".
func (t Target) Addr() string {
	p := t.Port
	if p == 0 {
		p = inventory.DefaultBMCPort
	}
	return net.JoinHostPort(t.Address, strconv.Itoa(p))
}

// AllowedCipherSuites are the RMCP+ cipher suites this package will use:
// those that authenticate, protect integrity and encrypt with AES-128 (the
// inventory's list). Suite 0 (no authentication) and the suites without
// integrity or encryption, or with RC4, are refused.
var AllowedCipherSuites = inventory.SupportedCipherSuites

// checkCipherSuites validates a cipher suite list; path is the field path
// used in messages.
func checkCipherSuites(path string, suites []int) error {
	if len(suites) == 0 {
		return fmt.Errorf("%s is empty: list cipher suites, e.g. [17, 3]: %w", path, ErrConfig)
	}
	seen := map[int]bool{}
	for i, s := range suites {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case s == 0:
			return fmt.Errorf("%s is 0: cipher suite 0 has no authentication and is refused; use 17 or 3: %w", p, ErrConfig)
		case seen[s]:
			return fmt.Errorf("%s: cipher suite %d is listed twice: %w", p, s, ErrConfig)
		case !allowedSuite(s):
			return fmt.Errorf("%s is %d: only %v are allowed (authentication, integrity and AES encryption): %w", p, s, AllowedCipherSuites, ErrConfig)
		}
		seen[s] = true
	}
	return nil
}

func allowedSuite(s int) bool {
	for _, a := range AllowedCipherSuites {
		if a == s {
			return true
		}
	}
	return false
}

// Validate checks the target's fields.
func (t Target) Validate() error {
	switch {
	case t.Server == "":
		return fmt.Errorf("BMC target without a server name: %w", ErrConfig)
	case t.Address == "":
		return fmt.Errorf("%s: bmc.address is empty: %w", t.Server, ErrConfig)
	case t.Port < 0 || t.Port > 65535:
		return fmt.Errorf("%s: bmc.port %d is not a UDP port: %w", t.Server, t.Port, ErrConfig)
	case t.User == "" || len(t.User) > 16:
		return fmt.Errorf("%s: bmc.user must be 1 to 16 bytes (IPMI limit): %w", t.Server, ErrConfig)
	case len(t.Password) > 20:
		return fmt.Errorf("%s: the BMC password is longer than 20 bytes, the IPMI 2.0 limit: %w", t.Server, ErrConfig)
	}
	return checkCipherSuites(t.Server+": bmc.cipherSuites", t.CipherSuites)
}

// TargetFromHost builds the target of an inventory host, resolving the
// password reference. Errors name the server and the field path.
func TargetFromHost(h inventory.Host) (Target, error) {
	b := h.BMC
	if b == nil {
		return Target{}, fmt.Errorf("%s: %s.bmc is not set: add a bmc block (address, user, password) to manage this server's power: %w", h.Name, h.Path, ErrConfig)
	}
	t := Target{
		Server: h.Name, Address: b.Address, Port: b.Port, User: b.User,
		CipherSuites: append([]int(nil), b.CipherSuites...),
	}
	if t.Port == 0 {
		t.Port = inventory.DefaultBMCPort
	}
	if len(t.CipherSuites) == 0 {
		t.CipherSuites = append([]int(nil), inventory.DefaultCipherSuites...)
	}
	if err := checkCipherSuites(h.Path+".bmc.cipherSuites", t.CipherSuites); err != nil {
		return Target{}, fmt.Errorf("%s: %w", h.Name, err)
	}
	if t.Address == "" {
		return Target{}, fmt.Errorf("%s: %s.bmc.address is empty: %w", h.Name, h.Path, ErrConfig)
	}
	if t.User == "" {
		return Target{}, fmt.Errorf("%s: %s.bmc.user is empty: %w", h.Name, h.Path, ErrConfig)
	}
	pw, err := b.Password.Resolve()
	if err != nil {
		return Target{}, fmt.Errorf("%s: %s.bmc.password: %w: %w", h.Name, h.Path, err, ErrConfig)
	}
	t.Password = pw
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	return t, nil
}

// Defaults of Options.
const (
	DefaultMinInterval     = time.Second
	DefaultRetryBudget     = 60 * time.Second
	DefaultExchangeTimeout = time.Second
	DefaultExchangeRetries = 2
	DefaultConcurrency     = 16
	DefaultPollInterval    = 2 * time.Second
	DefaultSessionIdle     = 20 * time.Second
)

// Options tune BMC hygiene. The zero value means the defaults.
type Options struct {
	// MinInterval is the least time between two commands to one BMC
	// (Ironic uses 5 s for ipmitool, where every command is a new
	// session; here a command reuses the session). Negative: none.
	MinInterval time.Duration
	// RetryBudget bounds the retries of one command after timeouts and
	// "busy / insufficient resources" answers, with exponential backoff.
	// Negative: no retries.
	RetryBudget time.Duration
	// ExchangeTimeout is the wait for one UDP answer; ExchangeRetries
	// the resends before an exchange counts as timed out (negative: none).
	ExchangeTimeout time.Duration
	ExchangeRetries int
	// Concurrency is the number of BMCs a fleet operation talks to at
	// once.
	Concurrency int
	// PollInterval is how often WaitPower reads the power state (never
	// more often than MinInterval).
	PollInterval time.Duration
	// SessionIdle: a session unused for longer is closed and reopened
	// before the next command, ahead of the BMC's inactivity timeout.
	SessionIdle time.Duration
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// withDefaults fills the zero fields. It is idempotent: negative values
// (meaning "none") are kept and clamped where they are used.
func (o Options) withDefaults() Options {
	if o.MinInterval == 0 {
		o.MinInterval = DefaultMinInterval
	}
	if o.RetryBudget == 0 {
		o.RetryBudget = DefaultRetryBudget
	}
	if o.ExchangeTimeout <= 0 {
		o.ExchangeTimeout = DefaultExchangeTimeout
	}
	if o.ExchangeRetries == 0 {
		o.ExchangeRetries = DefaultExchangeRetries
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = DefaultSessionIdle
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
