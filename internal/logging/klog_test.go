package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging/klogtest"
)

// klogHeader is klog's own line format: "W1206 10:00:00.000000   123 file.go:42] ...".
var klogHeader = regexp.MustCompile(`(?m)^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6}`)

// captureStderr runs f with os.Stderr (where klog writes without a
// logger) going to a pipe, and returns what was written.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	func() {
		defer func() { os.Stderr = orig }()
		f()
		klog.Flush()
	}()
	w.Close()
	return string(<-done)
}

// TestRouteKlog: client-go's own warning (clientcmd with neither a
// kubeconfig nor a master logs one through klog) and structured klog calls
// come out as JSON records of the --log-format json logger, and nothing
// reaches stderr in klog's format.
func TestRouteKlog(t *testing.T) {
	// Without the route klog writes its own format to stderr: the
	// capture sees it.
	before := captureStderr(t, func() { klog.Warning("Before routing") })
	if !klogHeader.MatchString(before) || !strings.Contains(before, "Before routing") {
		t.Fatalf("klog's own output is not captured (the check below would prove nothing): %q", before)
	}

	var other, buf bytes.Buffer
	l, err := New(&other, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	RouteKlog(l.Handler())
	// The last route wins: the JSON logger gets what follows.
	l, err = New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	RouteKlog(l.Handler())
	t.Cleanup(func() { RouteKlog(nil) })

	stderr := captureStderr(t, func() {
		klogtest.ClientGoWarns(t)
		klog.InfoS("Watching nodes", "node", "dc1-r01-w01")
		klog.ErrorS(errors.New("connection refused"), "Failed to list", "resource", "nodes")
		klog.V(3).InfoS("Verbose detail")
	})
	if stderr != "" {
		t.Errorf("klog wrote to stderr past the logger: %q", stderr)
	}
	if other.Len() != 0 {
		t.Errorf("the replaced route still got records: %q", other.String())
	}
	if klogHeader.MatchString(buf.String()) {
		t.Errorf("klog-formatted line in the log: %q", buf.String())
	}
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %q: %v", line, err)
		}
		recs = append(recs, rec)
	}
	find := func(sub string) map[string]any {
		for _, r := range recs {
			if m, _ := r["msg"].(string); strings.Contains(m, sub) {
				return r
			}
		}
		t.Fatalf("no record with %q in %q", sub, buf.String())
		return nil
	}
	if r := find(klogtest.ClientGoWarning); r["level"] != "INFO" {
		t.Errorf("client-go's warning: %v", r)
	}
	if r := find("Watching nodes"); r["node"] != "dc1-r01-w01" || r["level"] != "INFO" {
		t.Errorf("structured record: %v", r)
	}
	if r := find("Failed to list"); r["level"] != "ERROR" || r["resource"] != "nodes" || !strings.Contains(r["err"].(string), "connection refused") {
		t.Errorf("error record: %v", r)
	}
	if strings.Contains(buf.String(), "Verbose detail") {
		t.Errorf("klog's V(3) passed klog's default verbosity: %q", buf.String())
	}

	// RouteKlog(nil) gives klog its own output back; routing again works.
	RouteKlog(nil)
	if after := captureStderr(t, func() { klog.Warning("After unrouting") }); !klogHeader.MatchString(after) {
		t.Errorf("RouteKlog(nil) did not give klog its output back: %q", after)
	}
	buf.Reset()
	RouteKlog(l.Handler())
	if stderr := captureStderr(t, func() { klog.InfoS("Routed again") }); stderr != "" || !strings.Contains(buf.String(), `"msg":"Routed again"`) {
		t.Errorf("routing again: stderr %q, log %q", stderr, buf.String())
	}
}
