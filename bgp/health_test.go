package bgp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	c, err := newChecker("api", 7, Check{URL: srv.URL, Interval: Duration{10 * time.Millisecond}, Timeout: Duration{time.Second}, Rise: 2, Fall: 3}, out)
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

func TestCheckerBadCA(t *testing.T) {
	_, err := newChecker("api", 1, Check{URL: "https://127.0.0.1:1/", CAFile: "/nonexistent/ca.crt"}, nil)
	if err == nil || !strings.Contains(err.Error(), "service api: reading check CA") {
		t.Errorf("got %v", err)
	}
}
