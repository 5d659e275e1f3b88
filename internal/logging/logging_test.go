package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("Hidden")
	l.Warn("Shown", "host", "n1")
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil || rec["msg"] != "Shown" || rec["host"] != "n1" {
		t.Fatalf("record %q: %v", b.String(), err)
	}
	b.Reset()
	l, _ = New(&b, "TEXT", "debug")
	l.Debug("Visible")
	if !strings.Contains(b.String(), "msg=Visible") {
		t.Fatalf("text output %q", b.String())
	}
	if _, err := New(&b, "xml", "info"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := New(&b, "text", "loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad level: %v", err)
	}
}
