// Package ssh is tricenter's SSH transport: connections through per-center
// jump hosts (ProxyJump chains, each hop's host key verified), host keys
// checked against pins, known_hosts files (including @cert-authority and
// @revoked lines) and, only when asked, trust on first use; key file and
// ssh-agent authentication; keepalives, dial and handshake timeouts; one
// connection per host reused for every session; atomic, checksummed,
// resumable uploads that check, transfer, verify and install a file in one
// session; root commands (AsRoot) that a cancelled ctx ends on the host
// with every process they started (terminate.go).
//
// A Pool owns the connections of one run:
//
//	pool, err := ssh.NewPool(ssh.Options{KnownHosts: []string{"~/.ssh/known_hosts"}, Logger: log})
//	defer pool.Close()
//	jump := &ssh.Endpoint{Name: "prod-jump", Address: "198.18.16.2", User: "root", KeyFile: key}
//	c, err := pool.Client(ctx, ssh.Endpoint{Name: "node1", Address: "198.18.17.10", User: "root",
//		KeyFile: key, HostKey: "SHA256:…", Jump: jump})
//	out, err := c.Output(ctx, "uname -r")
//
// Nothing here skips host key verification: there is no option for it.
package ssh

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Defaults for Options.
const (
	DefaultDialTimeout       = 10 * time.Second
	DefaultHandshakeTimeout  = 15 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultKeepaliveCountMax = 3
	DefaultPassphraseEnv     = "TRICENTER_SSH_KEY_PASSPHRASE"
)

// Endpoint is one SSH server to reach, optionally through a jump host
// (which may itself have a jump host: a ProxyJump chain).
type Endpoint struct {
	Name    string // name used in messages (the inventory name)
	Address string // IP address or DNS name
	Port    int    // default 22
	User    string // default root
	KeyFile string // private key file; its passphrase comes from Options.PassphraseEnv
	Agent   bool   // authenticate with ssh-agent (SSH_AUTH_SOCK) too
	// HostKey pins the host key: "SHA256:…" or a public key line. When set
	// it is the only key accepted, whatever known_hosts says.
	HostKey string
	Jump    *Endpoint
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Address, strconv.Itoa(e.port())) }

func (e Endpoint) port() int {
	if e.Port == 0 {
		return 22
	}
	return e.Port
}

func (e Endpoint) user() string {
	if e.User == "" {
		return "root"
	}
	return e.User
}

func (e Endpoint) name() string {
	if e.Name != "" {
		return e.Name
	}
	return e.Addr()
}

// String is the endpoint's name.
func (e Endpoint) String() string { return e.name() }

// key identifies a connection: user, address and the hops in front.
func (e Endpoint) key() string {
	k := e.user() + "@" + e.Addr()
	if e.Jump != nil {
		k += " via " + e.Jump.key()
	}
	return k
}

// Options configure a Pool. The zero value is usable: strict host keys
// with no known_hosts file (so every host needs a pin), default timeouts.
type Options struct {
	// KnownHosts files to check host keys against. With AcceptNew, new
	// keys are appended to the first one.
	KnownHosts []string
	// HostKeyPolicy is Strict (default) or AcceptNew.
	HostKeyPolicy HostKeyPolicy
	// OnNewHostKey is called when AcceptNew trusts a key, e.g. to record
	// it in Terraform state.
	OnNewHostKey func(Endpoint, xssh.PublicKey)
	// PassphraseEnv names the environment variable holding the passphrase
	// of encrypted key files (default TRICENTER_SSH_KEY_PASSPHRASE).
	PassphraseEnv string
	// Keys are private keys held in memory (PEM), by the key file name
	// that stands for them in endpoints (the Terraform provider's inline
	// key): an endpoint's KeyFile found here is never read from disk.
	Keys map[string][]byte
	// AgentSocket is the ssh-agent socket (default $SSH_AUTH_SOCK).
	AgentSocket       string
	DialTimeout       time.Duration
	HandshakeTimeout  time.Duration
	KeepaliveInterval time.Duration // negative disables keepalives
	KeepaliveCountMax int
	// TerminateGrace is how long the processes of a cancelled root
	// command get between TERM and KILL (default DefaultTerminateGrace;
	// see AsRoot).
	TerminateGrace time.Duration
	Logger         *slog.Logger
}

// Pool dials and caches one connection per endpoint (jump hosts included)
// and redials a connection that broke. It is safe for concurrent use.
type Pool struct {
	opts Options
	keys *hostKeys

	mu      sync.Mutex
	conns   map[string]*Client
	dialing map[string]*dialCall
	signers map[string]xssh.Signer
	agent   agent.ExtendedAgent
	agentC  net.Conn
	closed  bool
	usage   map[string]*usage
}

// usage counts what a pool did with one host.
type usage struct {
	conns, sessions atomic.Int64
}

// Usage is what a pool did with one host: the connections it made and the
// sessions (one per command or file transfer) opened on them. Each
// session costs at least a round trip to the host, through its jump host.
type Usage struct {
	Connections int64 `json:"connections"`
	Sessions    int64 `json:"sessions"`
}

// Usage returns what the pool did with each host, by host name.
func (p *Pool) Usage() map[string]Usage {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Usage, len(p.usage))
	for name, u := range p.usage {
		out[name] = Usage{Connections: u.conns.Load(), Sessions: u.sessions.Load()}
	}
	return out
}

// usageOf is the counter of one host.
func (p *Pool) usageOf(name string) *usage {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.usage == nil {
		p.usage = map[string]*usage{}
	}
	u := p.usage[name]
	if u == nil {
		u = &usage{}
		p.usage[name] = u
	}
	return u
}

// dialCall is one dial shared by the callers that want the same
// connection. It runs under its own context, detached from any one
// caller's, so a caller that gives up does not fail the others: the dial
// is cancelled only when every caller waiting for it has given up.
type dialCall struct {
	done chan struct{}
	c    *Client
	err  error
	// waiters and abandoned are guarded by Pool.mu.
	waiters   int
	abandoned bool
	cancel    context.CancelFunc
}

// NewPool checks the options and reads the known_hosts files.
func NewPool(o Options) (*Pool, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PassphraseEnv == "" {
		o.PassphraseEnv = DefaultPassphraseEnv
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.KeepaliveInterval == 0 {
		o.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if o.KeepaliveCountMax <= 0 {
		o.KeepaliveCountMax = DefaultKeepaliveCountMax
	}
	if o.TerminateGrace <= 0 {
		o.TerminateGrace = DefaultTerminateGrace
	}
	if _, err := ParseHostKeyPolicy(string(o.HostKeyPolicy)); err != nil {
		return nil, err
	}
	for i, f := range o.KnownHosts {
		o.KnownHosts[i] = expandHome(f)
	}
	k, err := newHostKeys(&o)
	if err != nil {
		return nil, err
	}
	return &Pool{opts: o, keys: k, conns: map[string]*Client{}, dialing: map[string]*dialCall{},
		signers: map[string]xssh.Signer{}}, nil
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[1:])
		}
	}
	return p
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*Client{}
	ac := p.agentC
	p.mu.Unlock()
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if ac != nil {
		ac.Close()
	}
	return errors.Join(errs...)
}

// Client returns the connection to ep, dialling it (and the jump hosts in
// front of it) when there is none or the cached one broke. Concurrent
// callers share one dial; a caller whose ctx ends stops waiting without
// failing the others, and the dial stops when every caller has.
func (p *Pool) Client(ctx context.Context, ep Endpoint) (*Client, error) {
	k := ep.key()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("ssh pool is closed")
	}
	if c := p.conns[k]; c != nil && c.Alive() {
		p.mu.Unlock()
		return c, nil
	}
	call := p.dialing[k]
	if call == nil {
		// The dial keeps the first caller's values (not its cancellation)
		// and is bounded by the dial and handshake timeouts.
		dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		call = &dialCall{done: make(chan struct{}), cancel: cancel}
		p.dialing[k] = call
		go p.runDial(dctx, k, ep, call)
	}
	call.waiters++
	p.mu.Unlock()
	select {
	case <-call.done:
		return call.c, call.err
	case <-ctx.Done():
		p.mu.Lock()
		call.waiters--
		if call.waiters == 0 {
			// Nobody wants this dial any more: stop it, and let a later
			// caller start afresh rather than join a cancelled one.
			call.abandoned = true
			call.cancel()
			if p.dialing[k] == call {
				delete(p.dialing, k)
			}
		}
		p.mu.Unlock()
		return nil, ctx.Err()
	}
}

// runDial dials ep for every caller waiting on call and caches the result.
func (p *Pool) runDial(ctx context.Context, k string, ep Endpoint, call *dialCall) {
	defer call.cancel()
	c, err := p.dial(ctx, ep)
	p.mu.Lock()
	if p.dialing[k] == call {
		delete(p.dialing, k)
	}
	if err == nil {
		if p.closed || call.abandoned {
			// Nobody owns the connection: the pool closed, or every
			// caller gave up, while dialling.
			c.Close()
			c, err = nil, errors.New("ssh pool is closed")
		} else {
			if old := p.conns[k]; old != nil {
				old.Close()
			}
			p.conns[k] = c
		}
	}
	p.mu.Unlock()
	call.c, call.err = c, err
	close(call.done)
}

func (p *Pool) dial(ctx context.Context, ep Endpoint) (*Client, error) {
	if ep.Address == "" {
		return nil, fmt.Errorf("connecting to %s: no address: set ssh.address in the inventory", ep.name())
	}
	pin, err := ParsePin(ep.HostKey)
	if err != nil {
		return nil, fmt.Errorf("hostKey of %s: %w", ep.name(), err)
	}
	auth, err := p.auth(ep)
	if err != nil {
		return nil, err
	}
	var presented xssh.PublicKey
	check := p.keys.callback(ep, pin)
	cfg := &xssh.ClientConfig{
		User: ep.user(),
		Auth: auth,
		HostKeyCallback: func(h string, a net.Addr, k xssh.PublicKey) error {
			presented = k
			return check(h, a, k)
		},
		HostKeyAlgorithms: p.keys.algorithms(ep, pin),
		Timeout:           p.opts.DialTimeout,
	}
	var conn net.Conn
	dctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	defer cancel()
	via := ""
	if ep.Jump != nil {
		via = " via " + ep.Jump.name()
		jc, err := p.Client(ctx, *ep.Jump)
		if err != nil {
			return nil, fmt.Errorf("reaching %s through jump host: %w", ep.name(), err)
		}
		p.opts.Logger.Debug("Dialing through jump host", "host", ep.name(), "addr", ep.Addr(), "jump", ep.Jump.name())
		conn, err = jc.c.DialContext(dctx, "tcp", ep.Addr())
		if err != nil && errors.Is(jc.lost(err), ErrConnectionLost) {
			// The cached jump connection broke since it was last used:
			// redial it once.
			if jc, err = p.Client(ctx, *ep.Jump); err != nil {
				return nil, fmt.Errorf("reaching %s through jump host: %w", ep.name(), err)
			}
			conn, err = jc.c.DialContext(dctx, "tcp", ep.Addr())
		}
		if err != nil {
			return nil, fmt.Errorf("connecting to %s (%s)%s: %w", ep.name(), ep.Addr(), via, jc.lost(err))
		}
	} else {
		p.opts.Logger.Debug("Dialing", "host", ep.name(), "addr", ep.Addr())
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", ep.Addr())
		if err != nil {
			return nil, fmt.Errorf("connecting to %s (%s): %w", ep.name(), ep.Addr(), err)
		}
	}
	// The handshake gets its own deadline; channels through a jump host
	// have no SetDeadline, so a timer closes the connection instead.
	timedOut := make(chan struct{})
	timer := time.AfterFunc(p.opts.HandshakeTimeout, func() { close(timedOut); conn.Close() })
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cc, chans, reqs, err := xssh.NewClientConn(conn, ep.Addr(), cfg)
	timer.Stop()
	stop()
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, hk // already names the host; drop "ssh: handshake failed"

		case ctx.Err() != nil:
			return nil, fmt.Errorf("connecting to %s: %w", ep.name(), ctx.Err())
		case isClosed(timedOut):
			return nil, fmt.Errorf("connecting to %s (%s)%s: %w", ep.name(), ep.Addr(), via, &timeoutError{"ssh handshake", p.opts.HandshakeTimeout})
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%w to %s (%s) as %s with %s: check that the public key is in the user's authorized_keys",
				ErrAuth, ep.name(), ep.Addr(), ep.user(), describeAuth(ep))
		}
		return nil, fmt.Errorf("connecting to %s (%s)%s: %w", ep.name(), ep.Addr(), via, err)
	}
	c := &Client{ep: ep, c: xssh.NewClient(cc, chans, reqs), dead: make(chan struct{}), logger: p.opts.Logger, hostKey: presented,
		grace: p.opts.TerminateGrace, usage: p.usageOf(ep.name())}
	c.usage.conns.Add(1)
	go func() {
		_ = c.c.Wait()
		close(c.dead)
	}()
	if p.opts.KeepaliveInterval > 0 {
		go c.keepalive(p.opts.KeepaliveInterval, p.opts.KeepaliveCountMax)
	}
	p.opts.Logger.Debug("Connected", "host", ep.name(), "addr", ep.Addr(), "user", ep.user())
	return c, nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

type timeoutError struct {
	what string
	d    time.Duration
}

func (e *timeoutError) Error() string   { return fmt.Sprintf("%s timed out after %s", e.what, e.d) }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

var _ net.Error = (*timeoutError)(nil)

func describeAuth(ep Endpoint) string {
	var s []string
	if ep.KeyFile != "" {
		s = append(s, "key "+ep.KeyFile)
	}
	if ep.Agent {
		s = append(s, "ssh-agent")
	}
	return strings.Join(s, " and ")
}

func (p *Pool) auth(ep Endpoint) ([]xssh.AuthMethod, error) {
	var signers []xssh.Signer
	if ep.KeyFile != "" {
		s, err := p.keySigner(ep.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ssh key for %s: %w", ep.name(), err)
		}
		signers = append(signers, s)
	}
	if ep.Agent {
		ag, err := p.agentClient()
		if err != nil {
			return nil, fmt.Errorf("ssh-agent for %s: %w", ep.name(), err)
		}
		ss, err := ag.Signers()
		if err != nil {
			return nil, fmt.Errorf("ssh-agent for %s: listing keys: %w", ep.name(), err)
		}
		if len(ss) == 0 && len(signers) == 0 {
			return nil, fmt.Errorf("ssh-agent for %s holds no keys: ssh-add your key", ep.name())
		}
		signers = append(signers, ss...)
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("no SSH credentials for %s: set ssh.keyFile or ssh.agent: true in the inventory", ep.name())
	}
	return []xssh.AuthMethod{xssh.PublicKeys(signers...)}, nil
}

func (p *Pool) keySigner(file string) (xssh.Signer, error) {
	b, inMemory := p.opts.Keys[file]
	if !inMemory {
		file = expandHome(file)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.signers[file]; s != nil {
		return s, nil
	}
	if !inMemory {
		var err error
		if b, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("reading key file: %w", err)
		}
	}
	s, err := xssh.ParsePrivateKey(b)
	var pm *xssh.PassphraseMissingError
	if errors.As(err, &pm) {
		pass, ok := os.LookupEnv(p.opts.PassphraseEnv)
		if !ok {
			return nil, fmt.Errorf("key file %s is encrypted: export %s with its passphrase, or use ssh-agent", file, p.opts.PassphraseEnv)
		}
		s, err = xssh.ParsePrivateKeyWithPassphrase(b, []byte(pass))
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("the passphrase in %s does not decrypt key file %s", p.opts.PassphraseEnv, file)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("parsing key file %s: %w", file, err)
	}
	p.signers[file] = s
	return s, nil
}

func (p *Pool) agentClient() (agent.ExtendedAgent, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.agent != nil {
		return p.agent, nil
	}
	sock := p.opts.AgentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock == "" {
		return nil, errors.New("SSH_AUTH_SOCK is not set: start ssh-agent and ssh-add your key, or set ssh.keyFile")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connecting to the agent: %w", err)
	}
	p.agentC = c
	p.agent = agent.NewClient(c)
	return p.agent, nil
}

// Client is one SSH connection. Sessions (commands, SFTP) are multiplexed
// over it.
type Client struct {
	ep      Endpoint
	c       *xssh.Client
	dead    chan struct{}
	logger  *slog.Logger
	hostKey xssh.PublicKey
	grace   time.Duration // Options.TerminateGrace
	usage   *usage        // the pool's counter for this host

	mu   sync.Mutex
	sftp *sftp.Client
}

// Endpoint is what this client is connected to.
func (c *Client) Endpoint() Endpoint { return c.ep }

// HostKey is the key the host presented (and that was verified); for a
// host certificate, the certificate.
func (c *Client) HostKey() xssh.PublicKey { return c.hostKey }

// HostKeyFingerprint is the SHA256 fingerprint of the host's own key (the
// certified key for a certificate), as ssh-keygen -lf prints it.
func (c *Client) HostKeyFingerprint() string {
	k := c.hostKey
	if cert, ok := k.(*xssh.Certificate); ok {
		k = cert.Key
	}
	return xssh.FingerprintSHA256(k)
}

// User is the login user.
func (c *Client) User() string { return c.ep.user() }

// Alive reports whether the connection is still up.
func (c *Client) Alive() bool { return !isClosed(c.dead) }

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.sftp != nil {
		c.sftp.Close()
		c.sftp = nil
	}
	c.mu.Unlock()
	return c.c.Close()
}

// lost classifies an error seen on this connection: when the connection
// no longer answers, the error becomes transient (ErrConnectionLost).
func (c *Client) lost(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrConnectionLost) {
		return err
	}
	if !c.Alive() || !c.ping(3*time.Second) {
		c.c.Close()
		return &lostError{err}
	}
	return err
}

func (c *Client) ping(timeout time.Duration) bool {
	res := make(chan error, 1)
	go func() {
		_, _, err := c.c.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	select {
	case err := <-res:
		return err == nil
	case <-time.After(timeout):
		return false
	case <-c.dead:
		return false
	}
}

func (c *Client) keepalive(every time.Duration, max int) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
		}
		if c.ping(every) {
			missed = 0
			continue
		}
		missed++
		if missed >= max {
			c.logger.Warn("Closing unresponsive connection", "host", c.ep.name(), "missed_keepalives", missed)
			c.c.Close()
			return
		}
	}
}

// Run runs cmd in a new session. A non-zero exit is an *ExitError; a
// broken connection is transient (IsTransient). Cancelling ctx ends the
// remote command: a command AsRoot built has its processes, every one it
// started included, ended as root (TERM, then KILL after
// Options.TerminateGrace) before Run returns; any other gets SIGKILL
// through the session (which sshd delivers to the session's process group
// as the login user).
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess, err := c.newSession()
	if err != nil {
		return &notStartedError{c.lost(err)}
	}
	defer sess.Close()
	tail := &tailBuffer{max: 2048}
	sess.Stdin = stdin
	sess.Stdout = stdout
	if stderr != nil {
		sess.Stderr = io.MultiWriter(stderr, tail)
	} else {
		sess.Stderr = tail
	}
	if err := sess.Start(cmd); err != nil {
		return &notStartedError{c.lost(err)}
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		if id, what := runID(cmd); id == "" || !c.terminate(id, what) {
			_ = sess.Signal(xssh.SIGKILL)
		}
		sess.Close()
		return ctx.Err()
	}
	return c.exitError(cmd, err, tail)
}

// exitError classifies the result of a session that ran cmd: nil, an
// *ExitError (ErrSudoPassword when sudo wanted a password), or a lost
// connection.
func (c *Client) exitError(cmd string, err error, tail *tailBuffer) error {
	if err == nil {
		return nil
	}
	var xe *xssh.ExitError
	if errors.As(err, &xe) {
		msg := strings.TrimSpace(tail.String())
		_, shown := runID(cmd)
		ee := &ExitError{Cmd: shown, Status: xe.ExitStatus(), Signal: xe.Signal(), Stderr: msg}
		if strings.HasPrefix(cmd, sudoPrefix) && (strings.Contains(msg, "a password is required") ||
			strings.Contains(msg, "a terminal is required")) {
			return fmt.Errorf("%w for %s on %s: give it passwordless sudo (NOPASSWD in /etc/sudoers.d) or connect as root: %w",
				ErrSudoPassword, c.ep.user(), c.ep.name(), ee)
		}
		return ee
	}
	return c.lost(err)
}

// Output runs cmd and returns its stdout.
func (c *Client) Output(ctx context.Context, cmd string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, cmd, nil, &out, nil)
	return out.Bytes(), err
}

const sudoPrefix = "sudo -n -- "

// AsRoot wraps cmd so it runs as root: in the root login's shell as it
// is, through `sudo -n` (which fails instead of prompting) for other
// users; either way marked with a fresh run id so that Run can end it,
// and every process it starts, when its ctx is cancelled:
//
//	export TRICENTER_RUN=<run id>; CMD                          (root)
//	sudo -n -- sh -c 'export TRICENTER_RUN=<run id>; CMD'      (other logins)
//
// The run id is 32 random hex digits, not a secret; nothing else is added
// to the line, and error messages show the line without the mark. See
// terminate.go for how a cancelled command is ended.
func (c *Client) AsRoot(cmd string) string {
	return c.rootLine(runMark + newRunID() + "; " + cmd)
}

// newSession opens a session and counts it.
func (c *Client) newSession() (*xssh.Session, error) {
	if c.usage != nil {
		c.usage.sessions.Add(1)
	}
	return c.c.NewSession()
}

// SFTP returns the connection's SFTP client, starting it on first use.
func (c *Client) SFTP() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	// 128 KiB writes (OpenSSH's sftp-server takes messages up to 256 KiB)
	// cut the per-request cost fourfold against the 32 KiB default; 16 in
	// flight fill the 2 MiB channel window.
	s, err := sftp.NewClient(c.c, sftp.UseConcurrentWrites(true), sftp.MaxPacketUnchecked(128<<10),
		sftp.MaxConcurrentRequestsPerFile(16))
	if err != nil {
		return nil, c.lost(fmt.Errorf("starting sftp: %w", err))
	}
	c.sftp = s
	return s, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
