package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
	"github.com/tricenter/terraform-provider-tricenter/internal/logging/klogtest"
)

// TestClientGoLogsFollowLogFormat: once a command has its logger
// (--log-format json), what client-go logs through klog is a JSON line on
// the command's stderr like the rest, not a klog-formatted one.
func TestClientGoLogsFollowLogFormat(t *testing.T) {
	t.Cleanup(func() { logging.RouteKlog(nil) })
	var stderr bytes.Buffer
	g := &globals{stderr: &stderr, logFlags: cliflags.Logging{Format: "json", Level: "info"}}
	log, err := g.logger()
	if err != nil {
		t.Fatal(err)
	}
	log.Info("Planning", "hosts", 3)
	klogtest.ClientGoWarns(t)
	klog.ErrorS(nil, "Failed to watch", "resource", "nodes")

	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct{ Msg, Level string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a line of --log-format json output is not JSON: %q", line)
		}
		msgs = append(msgs, rec.Level+" "+rec.Msg)
	}
	want := []string{"INFO Planning", "INFO " + klogtest.ClientGoWarning + ".  Using the inClusterConfig.  This might not work.",
		"INFO error creating inClusterConfig, falling back to default config: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined",
		"ERROR Failed to watch"}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}
