package agent

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// The checker reports healthy after Rise successes and unhealthy after
// Fall failures, with the reason.
func TestCheckerRiseFall(t *testing.T) {
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	out := make(chan healthEvent, 8)
	c, err := newChecker("api", 7, bgp.Check{URL: srv.URL, Interval: bgp.Duration{Duration: 10 * time.Millisecond}, Timeout: bgp.Duration{Duration: time.Second}, Rise: 2, Fall: 3}, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.run(ctx)
	next := func() healthEvent {
		select {
		case ev := <-out:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no health event")
		}
		return healthEvent{}
	}
	if ev := next(); ev.healthy || !strings.Contains(ev.detail, "503") || ev.gen != 7 {
		t.Fatalf("first event %+v: want the first failure with its status", ev)
	}
	start := time.Now()
	healthy.Store(true)
	if ev := next(); !ev.healthy {
		t.Fatalf("event %+v: want healthy", ev)
	}
	if time.Since(start) < 10*time.Millisecond {
		t.Error("healthy before two successes")
	}
	healthy.Store(false)
	if ev := next(); ev.healthy || !strings.Contains(ev.detail, "503 Service Unavailable") {
		t.Fatalf("event %+v: want unhealthy with the reason", ev)
	}
}

// A CA file that is not there yet (the agent starts before the control
// plane writes its certificates) fails the probe with the reason and is
// read again at the next one; a file without a certificate is refused.
func TestCheckerCAAppearsLater(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	c, err := newChecker("api", 1, bgp.Check{URL: srv.URL, CAFile: ca, Timeout: bgp.Duration{Duration: time.Second}}, nil)
	if err != nil {
		t.Fatalf("a CA file that does not exist yet: %v", err)
	}
	if err := c.probe(context.Background()); err == nil || !strings.Contains(err.Error(), "service api: reading check CA") {
		t.Fatalf("probe without the CA: %v", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.probe(context.Background()); err != nil {
		t.Fatalf("probe once the CA exists: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.crt")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newChecker("api", 1, bgp.Check{URL: srv.URL, CAFile: bad}, nil); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}
