package bgp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// statusPath is the HTTP path served on the status socket.
const statusPath = "/v1/status"

// StatusSource reports a node's BGP status: the agent (package bgp/agent),
// or a fake in tests.
type StatusSource interface {
	Status(ctx context.Context) (*Status, error)
}

// Holder holds and releases services: the agent, or a fake in tests.
type Holder interface {
	// Hold makes service unhealthy at once ("held: REASON") and returns
	// when its VIPs' withdrawal has been sent to every established peer.
	Hold(ctx context.Context, service, reason string) (*HoldResult, error)
	// Release removes the hold; the check decides again.
	Release(ctx context.Context, service string) (*ReleaseResult, error)
}

// holdsPath is the HTTP path of holds on the status socket:
// POST holdsPath+SERVICE {"reason": ...} holds, DELETE releases.
const holdsPath = "/v1/holds/"

// ServeStatus serves the agent's status as JSON on a unix socket (mode
// 0600) until ctx ends; when a is also a Holder, the socket takes holds
// and releases too (`tricenter-bgp hold`, `release`). A stale socket left by a previous run is replaced;
// a socket another live agent answers on is an error.
func ServeStatus(ctx context.Context, socket string, a StatusSource, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return fmt.Errorf("status socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", socket, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("status socket %s: another agent is answering on it", socket)
	}
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("status socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+statusPath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		s, err := a.Status(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	})
	if h, ok := a.(Holder); ok {
		serveHolds(mux, h, log)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(socket)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		log.Error("Status socket failed", "socket", socket, "err", err)
		return fmt.Errorf("status socket %s: %w", socket, err)
	}
}

// ErrNoAgent means nothing answers on the status socket.
var ErrNoAgent = errors.New("no agent is running")

// FetchStatus asks the agent listening on socket for its status.
func FetchStatus(ctx context.Context, socket string) (*Status, error) {
	var s Status
	if err := call(ctx, socket, http.MethodGet, statusPath, nil, &s); err != nil {
		if errors.Is(err, ErrNoAgent) {
			return nil, err
		}
		return nil, fmt.Errorf("status from %s: %w", socket, err)
	}
	return &s, nil
}

// call sends one request to the agent on socket and decodes its JSON
// answer into out. Nothing listening is ErrNoAgent; an answer other than
// 200 is an error carrying the agent's message (wrapping
// ErrUnknownService for 404).
func call(ctx context.Context, socket, method, path string, in, out any) error {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer c.CloseIdleConnections()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("%w: nothing listens on %s (is tricenter-bgp running?)", ErrNoAgent, socket)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(data))
		if resp.StatusCode == http.StatusNotFound && method != http.MethodGet {
			return &agentError{msg: msg, is: ErrUnknownService}
		}
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	return json.Unmarshal(data, out)
}

// agentError is an error message the agent sent back.
type agentError struct {
	msg string
	is  error
}

func (e *agentError) Error() string { return e.msg }
func (e *agentError) Unwrap() error { return e.is }

// RequestHold asks the agent on socket to hold service (see Holder); it
// returns when the withdrawal has been sent or ctx ends.
func RequestHold(ctx context.Context, socket, service, reason string) (*HoldResult, error) {
	if err := CheckServiceName(service); err != nil {
		return nil, err
	}
	var r HoldResult
	if err := call(ctx, socket, http.MethodPost, holdsPath+service, holdRequest{Reason: reason}, &r); err != nil {
		if errors.Is(err, ErrNoAgent) || errors.Is(err, ErrUnknownService) {
			return nil, err
		}
		return nil, fmt.Errorf("holding %s through %s: %w", service, socket, err)
	}
	return &r, nil
}

// RequestRelease asks the agent on socket to release service.
func RequestRelease(ctx context.Context, socket, service string) (*ReleaseResult, error) {
	if err := CheckServiceName(service); err != nil {
		return nil, err
	}
	var r ReleaseResult
	if err := call(ctx, socket, http.MethodDelete, holdsPath+service, nil, &r); err != nil {
		if errors.Is(err, ErrNoAgent) || errors.Is(err, ErrUnknownService) {
			return nil, err
		}
		return nil, fmt.Errorf("releasing %s through %s: %w", service, socket, err)
	}
	return &r, nil
}

type holdRequest struct {
	Reason string `json:"reason"`
}

// serveHolds registers the hold and release handlers.
func serveHolds(mux *http.ServeMux, h Holder, log *slog.Logger) {
	fail := func(w http.ResponseWriter, err error) {
		code := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, ErrUnknownService):
			code = http.StatusNotFound
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			code = http.StatusGatewayTimeout
		}
		http.Error(w, err.Error(), code)
	}
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST "+holdsPath+"{service}", func(w http.ResponseWriter, r *http.Request) {
		service := r.PathValue("service")
		var req holdRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "reading the hold request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := errors.Join(CheckServiceName(service), CheckHoldReason(req.Reason)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The client's deadline ends the request (and the wait) when it
		// gives up.
		res, err := h.Hold(r.Context(), service, req.Reason)
		if err != nil {
			log.Warn("Hold failed", "service", service, "err", err)
			fail(w, err)
			return
		}
		reply(w, res)
	})
	mux.HandleFunc("DELETE "+holdsPath+"{service}", func(w http.ResponseWriter, r *http.Request) {
		service := r.PathValue("service")
		if err := CheckServiceName(service); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := h.Release(r.Context(), service)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, res)
	})
}

// WriteStatusTable prints a status as the table `tricenter-bgp status` shows.
func WriteStatusTable(w io.Writer, s *Status) error {
	ew := &errWriter{w: w}
	ew.printf("Node %s  AS %d  router-id %s\n\n", s.Node, s.ASN, s.RouterID)
	ew.printf("%-16s %-16s %-11s %-12s %-10s %s\n", "PEER", "ADDRESS", "AS", "STATE", "UPTIME", "RECEIVED")
	for _, se := range s.Sessions {
		ew.printf("%-16s %-16s %-11d %-12s %-10s %d\n", se.Name, se.Address, se.ASN, se.State, se.Uptime(), se.Received)
	}
	ew.printf("\n%-20s %-16s %s\n", "ANNOUNCED", "NEXT HOP", "FOR")
	for _, a := range s.Announced {
		ew.printf("%-20s %-16s %s\n", a.Prefix, a.NextHop, joinComma(a.For))
	}
	if len(s.Services) > 0 {
		ew.printf("\n%-16s %-8s %-20s %s\n", "SERVICE", "HEALTHY", "VIPS", "REASON")
		for _, sv := range s.Services {
			h := "yes"
			switch {
			case sv.Held != nil:
				h = "held"
			case !sv.Healthy:
				h = "no"
			}
			reason := sv.Reason
			if sv.Held != nil && !sv.Held.Since.IsZero() {
				reason += " (since " + sv.Held.Since.Local().Format(time.DateTime) + ")"
			}
			ew.printf("%-16s %-8s %-20s %s\n", sv.Name, h, joinComma(sv.VIPs), reason)
		}
	}
	if l := s.LoadBalancers; l != nil {
		state := "not watched (routes set directly)"
		switch {
		case l.Watching && l.Synced:
			state = fmt.Sprintf("watched, synced, %d Service(s)", l.Services)
		case l.Watching:
			state = "watched, not synced yet"
		}
		if l.Center != "" {
			state += fmt.Sprintf("; center %s (%s), default preference %s", l.Center, l.CenterRole, l.Prefer)
		}
		ew.printf("\nLoadBalancer Services: %s\n", state)
		if l.Error != "" {
			ew.printf("Last error at %s (routes kept as last known): %s\n", l.ErrorAt.Local().Format(time.DateTime), l.Error)
		}
		if len(l.Routes) > 0 {
			ew.printf("%-20s %-9s %-10s %s\n", "LOADBALANCER", "PREPENDS", "ANNOUNCED", "SERVICE")
			for _, r := range l.Routes {
				ann := "yes"
				if !r.Announced {
					ann = "no"
				}
				ew.printf("%-20s %-9d %-10s %s\n", r.Prefix, r.Prepends, ann, r.Service)
			}
		}
	}
	if len(s.Withdrawing) > 0 {
		ew.printf("\n%-20s %s\n", "WITHDRAWING", "NOT YET SENT TO")
		for _, wd := range s.Withdrawing {
			ew.printf("%-20s %s\n", wd.Prefix, joinComma(wd.Peers))
		}
	}
	return ew.err
}

func joinComma(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// Status is what the agent reports on its status socket.
type Status struct {
	Node      string          `json:"node"`
	ASN       uint32          `json:"asn"`
	RouterID  string          `json:"routerID"`
	Started   time.Time       `json:"started"`
	Sessions  []Session       `json:"sessions"`
	Announced []Announced     `json:"announced"`
	Services  []ServiceStatus `json:"services"`
	// Withdrawing are withdrawals not yet written to every established
	// session (normally empty, or for a few milliseconds).
	Withdrawing []Withdrawal `json:"withdrawing,omitempty"`
	// LoadBalancers is the LoadBalancer Services' watch and routes (set
	// when the configuration has a loadBalancers section, or routes are
	// announced).
	LoadBalancers *LoadBalancerStatus `json:"loadBalancers,omitempty"`
}

// LoadBalancerStatus is the agent's view of the LoadBalancer Services.
type LoadBalancerStatus struct {
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Center     string `json:"center,omitempty"`
	CenterRole string `json:"centerRole,omitempty"`
	// Prefer is the default preference.
	Prefer string `json:"prefer,omitempty"`
	// Watching is true while a watch runs; Synced once it has listed the
	// Services and EndpointSlices. Error is its last error: the routes
	// then stay as last known.
	Watching bool      `json:"watching"`
	Synced   bool      `json:"synced"`
	Services int       `json:"services"`
	Error    string    `json:"error,omitempty"`
	ErrorAt  time.Time `json:"errorAt,omitzero"`
	// Since is when the routes last changed.
	Since  time.Time           `json:"since,omitzero"`
	Routes []LoadBalancerRoute `json:"routes"`
}

// LoadBalancerRoute is one LoadBalancer /32 the node announces.
type LoadBalancerRoute struct {
	Prefix  string `json:"prefix"`
	Service string `json:"service"`
	// Prepends is how many times the route repeats the node's ASN (the
	// AS path the routers see is 1 + Prepends long).
	Prepends int `json:"prepends"`
	// Announced is false while the announcement failed.
	Announced bool `json:"announced"`
}

// Session is one BGP session.
type Session struct {
	Name          string    `json:"name"`
	Address       string    `json:"address"`
	ASN           uint32    `json:"asn"`
	State         string    `json:"state"`
	Since         time.Time `json:"since,omitzero"`
	UptimeSeconds float64   `json:"uptimeSeconds,omitempty"`
	Received      uint64    `json:"received"`
	Accepted      uint64    `json:"accepted"`
}

// Established reports whether the session is up.
func (s Session) Established() bool { return s.State == "Established" }

// Announced is one announced prefix.
type Announced struct {
	Prefix  string    `json:"prefix"`
	NextHop string    `json:"nextHop"`
	For     []string  `json:"for"`
	Since   time.Time `json:"since"`
	// Prepends is how many times the path repeats the node's ASN.
	Prepends int `json:"prepends,omitempty"`
}

// ServiceStatus is one service's health.
type ServiceStatus struct {
	Name    string    `json:"name"`
	VIPs    []string  `json:"vips"`
	Check   string    `json:"check,omitempty"`
	Healthy bool      `json:"healthy"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
	// Held is set while the service is held (`tricenter-bgp hold`): it is
	// unhealthy whatever its check says.
	Held *Hold `json:"held,omitempty"`
}

// Uptime formats a session's uptime like routers do (1d02h03m, 05:04:03).
func (s Session) Uptime() string {
	if !s.Established() {
		return "-"
	}
	d := time.Duration(s.UptimeSeconds * float64(time.Second)).Round(time.Second)
	days := int(d / (24 * time.Hour))
	d -= time.Duration(days) * 24 * time.Hour
	h, m, sec := int(d/time.Hour), int(d/time.Minute)%60, int(d/time.Second)%60
	if days > 0 {
		return strconv.Itoa(days) + "d" + fmt.Sprintf("%02dh%02dm", h, m)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}
