package bgp

import (
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
	"time"
)

// statusPath is the HTTP path served on the status socket.
const statusPath = "/v1/status"

// StatusSource reports a node's BGP status: the agent (package bgp/agent),
// or a fake in tests.
type StatusSource interface {
	Status(ctx context.Context) (*Status, error)
}

// ServeStatus serves the agent's status as JSON on a unix socket (mode
// 0600) until ctx ends. A stale socket left by a previous run is replaced;
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
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+statusPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return nil, fmt.Errorf("%w: nothing listens on %s (is tricenter-bgp running?)", ErrNoAgent, socket)
		}
		return nil, fmt.Errorf("status from %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status from %s: %s: %s", socket, resp.Status, body)
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("status from %s: %w", socket, err)
	}
	return &s, nil
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
			if !sv.Healthy {
				h = "no"
			}
			ew.printf("%-16s %-8s %-20s %s\n", sv.Name, h, joinComma(sv.VIPs), sv.Reason)
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
}

// ServiceStatus is one service's health.
type ServiceStatus struct {
	Name    string    `json:"name"`
	VIPs    []string  `json:"vips"`
	Check   string    `json:"check,omitempty"`
	Healthy bool      `json:"healthy"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
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
