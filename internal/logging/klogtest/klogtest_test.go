package klogtest

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

// TestClientGoWarns: the warning reaches klog's logger, at Info, starting
// with ClientGoWarning.
func TestClientGoWarns(t *testing.T) {
	var buf bytes.Buffer
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(klog.ClearLogger)
	ClientGoWarns(t)
	if !strings.Contains(buf.String(), `level=INFO msg="`+ClientGoWarning) {
		t.Fatalf("klog's logger got %q", buf.String())
	}
}
