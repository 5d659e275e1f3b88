package provider

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/hashicorp/terraform-plugin-log/tflogtest"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
)

// TestSlogToTflog checks that library records reach tflog with their
// level, message and attributes (groups dotted, LogValuers resolved), and
// that a bmc.Target logs without its password.
func TestSlogToTflog(t *testing.T) {
	var out bytes.Buffer
	ctx := tflogtest.RootLogger(context.Background(), &out)
	log := newLogger(ctx).With("server", "s1")
	tgt := bmc.Target{Server: "s1", Address: "198.18.51.1", Port: 623, User: "admin", Password: "hunter2-secret"}

	log.Debug("Opening RMCP+ session", "cipherSuite", 3)
	log.WithGroup("bmc").Info("Sending chassis control", "target", tgt, "command", "on")
	log.Warn("BMC command failed, retrying", "attempt", 2, "err", errors.New("timeout"))
	log.Error("Gave up", slog.Group("retry", "budget", "60s"), "ok", false)
	log.Log(ctx, slog.LevelDebug-4, "Raw exchange")

	entries, err := tflogtest.MultilineJSONDecode(&out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Bytes(), []byte("hunter2")) {
		t.Fatalf("the password reached the log: %s", out.String())
	}
	want := []struct {
		level, msg string
		fields     map[string]any
	}{
		{"debug", "Opening RMCP+ session", map[string]any{"server": "s1", "cipherSuite": float64(3)}},
		{"info", "Sending chassis control", map[string]any{"server": "s1", "bmc.target.server": "s1", "bmc.target.bmc": "198.18.51.1:623", "bmc.command": "on"}},
		{"warn", "BMC command failed, retrying", map[string]any{"attempt": float64(2), "err": "timeout"}},
		{"error", "Gave up", map[string]any{"retry.budget": "60s", "ok": false}},
		{"trace", "Raw exchange", map[string]any{"server": "s1"}},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d: %s", len(entries), len(want), out.String())
	}
	for i, w := range want {
		e := entries[i]
		if e["@level"] != w.level || e["@message"] != w.msg {
			t.Errorf("entry %d = %v %v, want %s %s", i, e["@level"], e["@message"], w.level, w.msg)
		}
		for k, v := range w.fields {
			if e[k] != v {
				t.Errorf("entry %d: %s = %#v, want %#v (entry %v)", i, k, e[k], v, e)
			}
		}
	}
}
