package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Client talks to one BMC over RMCP+ (IPMI 2.0 "lanplus"). It keeps one
// session open between commands, spaces commands by Options.MinInterval
// and retries timeouts and "busy" answers within Options.RetryBudget. A
// Client is safe for concurrent use; commands to one BMC are serialised.
type Client struct {
	t    Target
	opts Options
	log  *slog.Logger

	mu       sync.Mutex // serialises commands; guards the fields below
	conn     *client.Client
	suite    int
	lastCmd  time.Time // end of the previous command
	lastUsed time.Time
}

// NewClient returns a client for t. It does not connect: the first command
// opens the session.
func NewClient(t Target, opts Options) (*Client, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	return &Client{t: t, opts: opts, log: opts.Logger.With("server", t.Server, "bmc", t.Addr())}, nil
}

// Target is the BMC this client talks to.
func (c *Client) Target() Target { return c.t }

// CipherSuite is the suite of the open session, or 0 when none is open.
func (c *Client) CipherSuite() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return 0
	}
	return c.suite
}

// Close closes the session, if any.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeLocked(ctx)
}

func (c *Client) closeLocked(ctx context.Context) error {
	if c.conn == nil {
		return nil
	}
	conn := c.conn
	c.conn = nil
	ctx, cancel := context.WithTimeout(ctx, c.opts.ExchangeTimeout)
	defer cancel()
	if err := conn.Close(ctx); err != nil {
		// The socket is closed either way; a BMC that does not confirm
		// the session close only matters for the log.
		c.log.Debug("Session close not confirmed", "err", err)
	}
	return nil
}

// dropLocked forgets a session that failed, closing only the socket.
func (c *Client) dropLocked() {
	if c.conn == nil {
		return
	}
	abandon(c.conn)
	c.conn = nil
}

// abandon closes a failed go-ipmi client's socket without waiting for it.
// go-ipmi's UDP Close waits for an exchange still reading (one that a
// cancelled context walked away from) until that read's deadline, which
// would hold a cancelled command for up to ExchangeTimeout; the goroutine
// ends by then.
func abandon(conn *client.Client) {
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a cancelled context closes the socket without waiting for the BMC
		_ = conn.Close(ctx)
	}()
}

// connectLocked opens a session, trying the cipher suites in order.
func (c *Client) connectLocked(ctx context.Context) error {
	var errs []error
	for _, s := range c.t.CipherSuites {
		c.log.Debug("Opening RMCP+ session", "cipherSuite", s)
		conn, err := c.openSession(ctx, s)
		if err == nil {
			c.conn, c.suite, c.lastUsed = conn, s, time.Now()
			c.log.Debug("Session open", "cipherSuite", s)
			return nil
		}
		if !suiteRejected(err) {
			return err
		}
		c.log.Debug("Cipher suite not accepted", "cipherSuite", s, "err", err)
		errs = append(errs, fmt.Errorf("suite %d: %w", s, err))
	}
	return fmt.Errorf("%w (tried %v): %w", ErrNoCipherSuite, c.t.CipherSuites, errors.Join(errs...))
}

// openSession runs Open Session, RAKP 1-4 and Set Session Privilege Level
// with one cipher suite. Doing the steps here (rather than go-ipmi's
// Connect) keeps the typed status of each step for classify.
func (c *Client) openSession(ctx context.Context, suite int) (*client.Client, error) {
	conn, err := client.NewClient(c.t.Address, c.t.Port, c.t.User, c.t.Password)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	conn.WithCipherSuiteID(types.CipherSuiteID(suite)).
		WithTimeout(c.opts.ExchangeTimeout).
		WithRetry(max(c.opts.ExchangeRetries, 0)).
		WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator)
	fail := func(step string, err error) (*client.Client, error) {
		abandon(conn)
		return nil, classify(step, err)
	}
	if _, err := conn.OpenSession(ctx); err != nil {
		return fail("RMCP+ Open Session with cipher suite "+strconv.Itoa(suite), err)
	}
	if _, err := conn.RAKPMessage1(ctx); err != nil {
		return fail("RAKP message 1", err)
	}
	if _, err := conn.RAKPMessage3(ctx); err != nil {
		return fail("RAKP message 3", err)
	}
	if _, err := conn.SetSessionPrivilegeLevel(ctx, types.PrivilegeLevelAdministrator); err != nil {
		var re *types.ResponseError
		if errors.As(err, &re) && re.CompletionCode() >= 0x80 && re.CompletionCode() <= 0x81 {
			_, _ = fail("", err)
			return nil, fmt.Errorf("%s: completion code 0x%02X: user %s lacks the administrator privilege: %w",
				"Set Session Privilege Level", uint8(re.CompletionCode()), c.t.User, ErrAuth)
		}
		return fail("Set Session Privilege Level (administrator)", err)
	}
	return conn, nil
}

// do runs one command: it waits for the BMC's minimum interval, opens
// the session if needed and retries within the budget. f gets the live
// go-ipmi client and names the IPMI command in the errors it returns
// through classify. The error is wrapped once with the server name.
func (c *Client) do(ctx context.Context, what string, f func(ctx context.Context, conn *client.Client) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.doLocked(ctx, f)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", what, c.t.String(), err)
	}
	return nil
}

func (c *Client) doLocked(ctx context.Context, f func(ctx context.Context, conn *client.Client) error) error {
	budget := c.opts.RetryBudget
	if budget < 0 {
		budget = 0
	}
	deadline := time.Now().Add(budget)
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err := c.paceLocked(ctx); err != nil {
			return err
		}
		err := c.attemptLocked(ctx, f)
		c.lastCmd = time.Now()
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrTimeout) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: %w", ErrTimeout, err)
			}
			return err
		}
		wait := backoff + rand.N(backoff/2)
		if time.Now().Add(wait).After(deadline) {
			if attempt > 1 {
				return fmt.Errorf("%w (gave up after %d attempts within the %s retry budget)", err, attempt, budget)
			}
			return err
		}
		c.log.Warn("BMC command failed, retrying", "attempt", attempt, "in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (interrupted while waiting to retry: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 8*time.Second)
	}
}

// attemptLocked runs f once on a live session, opening or renewing it.
func (c *Client) attemptLocked(ctx context.Context, f func(ctx context.Context, conn *client.Client) error) error {
	if c.conn != nil && time.Since(c.lastUsed) > c.opts.SessionIdle {
		c.log.Debug("Renewing idle session")
		_ = c.closeLocked(ctx)
	}
	if c.conn == nil {
		if err := c.connectLocked(ctx); err != nil {
			return err
		}
	}
	err := f(ctx, c.conn)
	var ce *CompletionError
	if err != nil && !errors.As(err, &ce) {
		// The session may be gone (BMC reset, session timeout): start
		// afresh on the next attempt.
		c.dropLocked()
		return err
	}
	c.lastUsed = time.Now()
	return err
}

// paceLocked waits until MinInterval has passed since the last command.
func (c *Client) paceLocked(ctx context.Context) error {
	if c.lastCmd.IsZero() || c.opts.MinInterval <= 0 {
		return nil
	}
	wait := time.Until(c.lastCmd.Add(c.opts.MinInterval))
	if wait <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: the deadline passed while waiting out the minimum interval between commands", ErrTimeout)
		}
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}
