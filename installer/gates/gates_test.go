package gates

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var discard = slog.New(slog.DiscardHandler)

func TestRunPollsUntilItHolds(t *testing.T) {
	n := 0
	g := Run(context.Background(), discard, "gates/x", "x", 10*time.Second, func(context.Context) (string, error) {
		n++
		if n < 3 {
			return "", errors.New("not yet")
		}
		return "fine", nil
	})
	if !g.OK || g.Detail != "fine" || g.ID != "gates/x" || n != 3 {
		t.Fatalf("gate %+v after %d checks", g, n)
	}
}

func TestRunPermanentFailsAtOnce(t *testing.T) {
	n := 0
	g := Run(context.Background(), discard, "gates/x", "x", time.Minute, func(context.Context) (string, error) {
		n++
		return "", Permanent(errors.New("one rack only"))
	})
	if g.OK || n != 1 || g.Detail != "one rack only" {
		t.Fatalf("gate %+v after %d checks", g, n)
	}
}

// A gate that runs out of time says what its last completed check saw,
// not the deadline.
func TestRunNotWithin(t *testing.T) {
	g := Run(context.Background(), discard, "gates/x", "x", 1500*time.Millisecond, func(ctx context.Context) (string, error) {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 200*time.Millisecond {
			<-ctx.Done()
			return "", ctx.Err()
		}
		return "", errors.New("w01: not Ready")
	})
	if g.OK || !strings.HasPrefix(g.Detail, "not within") || !strings.Contains(g.Detail, "w01: not Ready") {
		t.Fatalf("gate %+v", g)
	}
	err := Failed([]Gate{g, {Name: "skipped", NotRun: "nothing changed"}, {Name: "ok", OK: true}})
	if !errors.Is(err, ErrGate) || !strings.Contains(err.Error(), "x: not within") || strings.Contains(err.Error(), "skipped") {
		t.Fatalf("Failed: %v", err)
	}
	if Failed([]Gate{{Name: "ok", OK: true}}) != nil {
		t.Fatal("Failed of holding gates is not nil")
	}
}

func TestReadyz(t *testing.T) {
	code := http.StatusInternalServerError
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("[-]etcd failed\n"))
	}))
	defer srv.Close()
	if _, err := Readyz(context.Background(), srv.Client(), srv.URL); err == nil || !strings.Contains(err.Error(), "HTTP 500: [-]etcd failed") {
		t.Fatalf("500: %v", err)
	}
	code = http.StatusOK
	if d, err := Readyz(context.Background(), srv.Client(), srv.URL); err != nil || d != "[-]etcd failed" {
		t.Fatalf("200: %q %v", d, err)
	}
}

func TestNodeProblems(t *testing.T) {
	c := &inventory.Cluster{}
	c.Spec.Sites = []inventory.Site{{Name: "site-a"}}
	c.Spec.Centers = []inventory.Center{{Name: "dc1", Site: "site-a"}}
	c.Spec.Racks = []inventory.Rack{{Name: "dc1-r01", Center: "dc1",
		Servers: []inventory.Server{{Name: "w01"}, {Name: "w02"}, {Name: "w03"}}}}
	nodes := []health.Node{
		{Name: "w01", Registered: true, Ready: true, Labels: map[string]string{
			"topology.kubernetes.io/region": "site-a", "topology.kubernetes.io/zone": "dc1", "tricenter.io/rack": "dc1-r01"}},
		{Name: "w02", Registered: false},
		{Name: "w03", Registered: true, Ready: false, Reason: "kubelet heartbeat 50s old", Labels: map[string]string{
			"topology.kubernetes.io/region": "site-a", "topology.kubernetes.io/zone": "dc1", "tricenter.io/rack": "dc1-r02"}},
		{Name: "not-in-inventory", Registered: false},
	}
	got := strings.Join(NodeProblems(c, nodes), "\n")
	for _, want := range []string{"w02: not registered", "w03: not Ready: kubelet heartbeat 50s old", `w03: label tricenter.io/rack="dc1-r02", want "dc1-r01"`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "w01") || strings.Contains(got, "not-in-inventory") {
		t.Errorf("problems of a healthy or unknown node:\n%s", got)
	}
}
