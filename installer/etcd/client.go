// Package etcd installs and operates tricenter's etcd cluster across three
// centers: the phases that bootstrap it from the placement (preflight,
// upload, configuration, start, health gate), quorum-safe membership
// changes (learner add then promote, remove through the API before
// stopping, one change at a time), status, snapshots, reset and the
// center-loss drill.
//
// Hosts are reached through the installer engine (installer/phase); etcd
// itself through go.etcd.io/etcd/client/v3 with mutual TLS.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Ports etcd listens on.
const (
	ClientPort = 2379
	PeerPort   = 2380
)

// ClientURL is a member's client URL.
func ClientURL(addr string) string {
	return "https://" + net.JoinHostPort(addr, strconv.Itoa(ClientPort))
}

// PeerURL is a member's peer URL.
func PeerURL(addr string) string {
	return "https://" + net.JoinHostPort(addr, strconv.Itoa(PeerPort))
}

// TLSConfig is the client TLS configuration for tricenter's own calls.
func TLSConfig(p *pki.Etcd) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(p.Admin.CertPEM, p.Admin.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	// The CA's PEM: during a rotation of the etcd CA, the bundle of the
	// old and the next CA.
	if !pool.AppendCertsFromPEM(p.CA.CertPEM) {
		return nil, errors.New("the etcd CA holds no PEM certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Client talks to the cluster. Use Close when done.
type Client struct {
	tls  *tls.Config
	log  *slog.Logger
	cli  *clientv3.Client
	eps  []string
	dial time.Duration
	// dialer, when set, opens every connection (through a jump host).
	dialer DialFunc

	withCerts bool
	mu        sync.Mutex
	ones      map[string]*clientv3.Client
}

// DialTimeout bounds connecting to one endpoint.
const DialTimeout = 3 * time.Second

// NewClient connects to the given client URLs (it does not fail when some
// are down: calls go to the ones that answer).
func NewClient(endpoints []string, tc *tls.Config, log *slog.Logger, opts ...ClientOption) (*Client, error) {
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tc.Clone(), DialTimeout: DialTimeout,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: o.grpcDial(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %v: %w", endpoints, err)
	}
	return &Client{tls: tc, log: log, cli: cli, eps: endpoints, dial: DialTimeout, dialer: o.dial}, nil
}

// DialFunc opens a connection to host:port (e.g. through an SSH jump host).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// ClientOption tunes NewClient.
type ClientOption func(*clientOptions)

type clientOptions struct{ dial DialFunc }

// WithDialer makes every connection to etcd go through dial.
func WithDialer(dial DialFunc) ClientOption { return func(o *clientOptions) { o.dial = dial } }

func (o clientOptions) grpcDial() []grpc.DialOption {
	if o.dial == nil {
		return []grpc.DialOption{}
	}
	d := o.dial
	return []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return d(ctx, "tcp", addr)
	})}
}

// KV exposes the raw client for reads and writes (the drill, benchmarks).
func (c *Client) KV() *clientv3.Client { return c.cli }

// Endpoints are the client URLs the client was made with.
func (c *Client) Endpoints() []string { return c.cli.Endpoints() }

// Close closes the connections.
func (c *Client) Close() error {
	c.mu.Lock()
	for _, one := range c.ones {
		one.Close()
	}
	c.ones = nil
	c.mu.Unlock()
	return c.cli.Close()
}

// Member is a cluster member as etcd reports it.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// Started reports whether the member has ever joined (an added member
// that never started has no name).
func (m Member) Started() bool { return m.Name != "" }

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	out := make([]Member, 0, len(r.Members))
	for _, m := range r.Members {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return out, nil
}

// EndpointStatus is one member's view.
type EndpointStatus struct {
	Endpoint  string    `json:"endpoint"`
	Healthy   bool      `json:"healthy"`
	Error     string    `json:"error,omitempty"`
	MemberID  uint64    `json:"memberID,omitempty"`
	Leader    uint64    `json:"leader,omitempty"`
	RaftTerm  uint64    `json:"raftTerm,omitempty"`
	RaftIndex uint64    `json:"raftIndex,omitempty"`
	Applied   uint64    `json:"raftAppliedIndex,omitempty"`
	DBSize    int64     `json:"dbSize,omitempty"`
	Version   string    `json:"version,omitempty"`
	IsLearner bool      `json:"isLearner,omitempty"`
	CertNotAf time.Time `json:"serverCertNotAfter,omitzero"`
	Errors    []string  `json:"errors,omitempty"`
}

// Status asks one endpoint for its status. Healthy means the endpoint
// answered, knows a leader and raised no alarm; a linearizable read
// through it is the final check (learners cannot serve one, so they are
// healthy when they answer and know the leader).
func (c *Client) Status(ctx context.Context, endpoint string) EndpointStatus {
	st := EndpointStatus{Endpoint: endpoint}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r, err := c.cli.Status(cctx, endpoint)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.MemberID, st.Leader, st.RaftTerm, st.RaftIndex = r.Header.MemberId, r.Leader, r.RaftTerm, r.RaftIndex
	st.Applied, st.DBSize, st.Version, st.IsLearner, st.Errors = r.RaftAppliedIndex, r.DbSize, r.Version, r.IsLearner, r.Errors
	st.Healthy = r.Leader != 0 && len(r.Errors) == 0
	if st.Healthy && !r.IsLearner {
		// A quorum read through this endpoint only.
		one, err := c.single(endpoint)
		if err == nil {
			_, err = one.Get(cctx, "health")
		}
		if err != nil {
			st.Healthy, st.Error = false, "linearizable read: "+err.Error()
		}
	}
	if c.withCerts {
		if na, err := c.serverCertExpiry(ctx, endpoint); err == nil {
			st.CertNotAf = na
		}
	}
	return st
}

// single returns a cached client bound to one endpoint.
func (c *Client) single(endpoint string) (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if one := c.ones[endpoint]; one != nil {
		return one, nil
	}
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: c.tls.Clone(),
		DialTimeout: c.dial, Logger: zap.NewNop(), DialOptions: clientOptions{dial: c.dialer}.grpcDial()})
	if err != nil {
		return nil, err
	}
	if c.ones == nil {
		c.ones = map[string]*clientv3.Client{}
	}
	c.ones[endpoint] = one
	return one, nil
}

// ReportCertificates makes Status read each endpoint's server certificate
// expiry (one more TLS handshake per call).
func (c *Client) ReportCertificates() { c.withCerts = true }

// serverCertExpiry reads the server certificate the endpoint presents.
func (c *Client) serverCertExpiry(ctx context.Context, endpoint string) (time.Time, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return time.Time{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var raw net.Conn
	if c.dialer != nil {
		raw, err = c.dialer(dctx, "tcp", u.Host)
	} else {
		var nd net.Dialer
		raw, err = nd.DialContext(dctx, "tcp", u.Host)
	}
	if err != nil {
		return time.Time{}, err
	}
	tc := c.tls.Clone()
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	conn := tls.Client(raw, tc)
	defer conn.Close()
	if err := conn.HandshakeContext(dctx); err != nil {
		return time.Time{}, err
	}
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return time.Time{}, errors.New("no server certificate")
	}
	return certs[0].NotAfter, nil
}

// AddLearner adds a non-voting member with the given peer URL. Like a
// removal, etcd refuses it ("unhealthy cluster") while a member has not been
// connected for its health interval; that refusal happens before anything is
// proposed, so it is waited out and retried (see retryRefused).
func (c *Client) AddLearner(ctx context.Context, peerURL string) (Member, []Member, error) {
	var r *clientv3.MemberAddResponse
	err := c.retryRefused(ctx, func(ctx context.Context) error {
		var err error
		r, err = c.cli.MemberAddAsLearner(ctx, []string{peerURL})
		return err
	}, nil)
	if err != nil {
		return Member{}, nil, fmt.Errorf("adding learner %s: %w", peerURL, err)
	}
	var all []Member
	for _, m := range r.Members {
		all = append(all, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return Member{ID: r.Member.ID, PeerURLs: r.Member.PeerURLs, IsLearner: true}, all, nil
}

// Promote makes a learner a voting member. etcd refuses while the learner
// lags behind the leader (ErrLearnerNotReady): the caller retries.
func (c *Client) Promote(ctx context.Context, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.cli.MemberPromote(ctx, id); err != nil {
		return fmt.Errorf("promoting member %x: %w", id, err)
	}
	return nil
}

// RefusedRetry bounds how long a membership change that etcd refused as
// unsafe for now is retried.
const RefusedRetry = 30 * time.Second

// retryRefused runs op until it succeeds, fails for another reason, or
// RefusedRetry passes. etcd refuses membership changes with "unhealthy
// cluster" while a member has not been connected for its health interval
// (5 s) — right after an outage or a previous change — and with "server
// stopped" when the request reached a member that is stopping. Both are
// refused before anything is proposed. done, when set, is asked after a
// failure whether the change took effect anyway (an answer lost with the
// member that applied it).
func (c *Client) retryRefused(ctx context.Context, op func(context.Context) error, done func(context.Context) bool) error {
	deadline := time.Now().Add(RefusedRetry)
	backoff := 250 * time.Millisecond
	for {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(octx)
		cancel()
		if err == nil || (done != nil && done(ctx)) {
			return nil
		}
		retry := errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrStopped)
		if !retry || time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (etcd refused earlier: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Remove removes a member from the cluster, waiting out refusals (see
// retryRefused). When the request went to the member being removed, it
// stops itself as the removal commits and the answer is lost: the member
// list then shows whether it is gone.
func (c *Client) Remove(ctx context.Context, id uint64) error {
	err := c.retryRefused(ctx, func(ctx context.Context) error {
		_, err := c.cli.MemberRemove(ctx, id)
		return err
	}, func(ctx context.Context) bool {
		gone, err := c.memberGone(ctx, id)
		return err == nil && gone
	})
	if err != nil {
		return fmt.Errorf("removing member %x: %w", id, err)
	}
	return nil
}

// memberGone reports whether id is no longer in the member list.
func (c *Client) memberGone(ctx context.Context, id uint64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.cli.MemberList(ctx)
	if err != nil {
		return false, err
	}
	for _, m := range r.Members {
		if m.ID == id {
			return false, nil
		}
	}
	return true, nil
}

// healthOf asks every member with a client URL for its status, in
// parallel, and reports which are healthy.
func (c *Client) healthOf(ctx context.Context, ms []Member) map[uint64]bool {
	out := map[uint64]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		if len(m.ClientURLs) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := c.Status(ctx, m.ClientURLs[0]).Healthy
			mu.Lock()
			out[m.ID] = ok
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// MoveLeader transfers leadership to member to, through the current
// leader's endpoint.
func (c *Client) MoveLeader(ctx context.Context, leaderEndpoint string, to uint64) error {
	one, err := c.single(leaderEndpoint)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := one.MoveLeader(ctx, to); err != nil {
		return fmt.Errorf("moving etcd leadership to %x: %w", to, err)
	}
	return nil
}

// ClusterHealth is the health gate's verdict.
type ClusterHealth struct {
	Members   []Member         `json:"members"`
	Endpoints []EndpointStatus `json:"endpoints"`
	Leader    uint64           `json:"leader"`
	// PerCenter counts started voting members per center.
	PerCenter map[string]int `json:"perCenter"`
	Problems  []string       `json:"problems,omitempty"`
}

// OK reports whether the gate passed.
func (h *ClusterHealth) OK() bool { return len(h.Problems) == 0 }

// ErrUnhealthy is wrapped by health gate failures.
var ErrUnhealthy = errors.New("etcd cluster unhealthy")

// Health checks every planned member: each answers and is healthy, all
// agree on one leader, the member list matches the plan (names, peer URLs,
// no learners) and members per center are as planned.
func (c *Client) Health(ctx context.Context, plan []inventory.Member) *ClusterHealth {
	h := &ClusterHealth{PerCenter: map[string]int{}}
	ms, err := c.Members(ctx)
	if err != nil {
		h.Problems = append(h.Problems, err.Error())
		return h
	}
	h.Members = ms
	byPeer := map[string]Member{}
	for _, m := range ms {
		for _, u := range m.PeerURLs {
			byPeer[u] = m
		}
	}
	want := map[string]bool{}
	leaders := map[uint64]bool{}
	h.Endpoints = make([]EndpointStatus, len(plan))
	done := make(chan struct{}, len(plan))
	for i, p := range plan {
		go func() {
			h.Endpoints[i] = c.Status(ctx, ClientURL(p.Address))
			done <- struct{}{}
		}()
	}
	for range plan {
		<-done
	}
	for i, p := range plan {
		want[PeerURL(p.Address)] = true
		m, ok := byPeer[PeerURL(p.Address)]
		switch {
		case !ok:
			h.Problems = append(h.Problems, fmt.Sprintf("%s is not a member", p.Name))
			continue
		case !m.Started():
			h.Problems = append(h.Problems, fmt.Sprintf("%s was added but never started", p.Name))
		case m.Name != p.Name:
			h.Problems = append(h.Problems, fmt.Sprintf("member at %s is named %q, planned %q", p.Address, m.Name, p.Name))
		case m.IsLearner:
			h.Problems = append(h.Problems, fmt.Sprintf("%s is still a learner", p.Name))
		default:
			h.PerCenter[p.Center]++
		}
		st := h.Endpoints[i]
		if !st.Healthy {
			h.Problems = append(h.Problems, fmt.Sprintf("%s is unhealthy: %s", p.Name, st.Error))
			continue
		}
		leaders[st.Leader] = true
	}
	for _, m := range ms {
		keep := false
		for _, u := range m.PeerURLs {
			keep = keep || want[u]
		}
		if !keep {
			h.Problems = append(h.Problems, fmt.Sprintf("member %s (%v) is not in the plan", m.Name, m.PeerURLs))
		}
	}
	if len(leaders) > 1 {
		h.Problems = append(h.Problems, fmt.Sprintf("members disagree on the leader (%d different leaders)", len(leaders)))
	}
	for l := range leaders {
		h.Leader = l
	}
	return h
}

// WaitHealthy polls Health until it passes or timeout ends.
func (c *Client) WaitHealthy(ctx context.Context, plan []inventory.Member, timeout time.Duration) (*ClusterHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var h *ClusterHealth
	for {
		h = c.Health(ctx, plan)
		if h.OK() {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("%w after %v: %v", ErrUnhealthy, timeout, h.Problems)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
