package agent

import (
	"context"
	"log/slog"
	"sort"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter feeds gobgp's logs into a *slog.Logger. gobgp's informational
// messages are chatty (every configuration step), so they are logged at
// debug level; the agent logs session changes itself.
//
// With sent set, the adapter also feeds gobgp's "sent update" messages to
// it, and so asks gobgp for debug messages whatever the log level (gobgp
// only builds them when GetLevel says debug); they are still logged only
// when the logger wants them.
type slogAdapter struct {
	l    *slog.Logger
	sent *sentLog
}

var _ gobgplog.Logger = slogAdapter{}

func (a slogAdapter) log(level slog.Level, msg string, f gobgplog.Fields) {
	if !a.l.Enabled(context.Background(), level) {
		return
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]any, 0, len(keys)+1)
	attrs = append(attrs, slog.String("component", "gobgp"))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, f[k]))
	}
	a.l.Log(context.Background(), level, msg, attrs...)
}

func (a slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.log(slog.LevelError, msg, f)
	panic(msg)
}

func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) {
	// gobgp calls Fatal on unrecoverable internal errors; it expects the
	// process to end.
	a.log(slog.LevelError, msg, f)
	panic(msg)
}

func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.log(slog.LevelWarn, msg, f) }
func (a slogAdapter) Info(msg string, f gobgplog.Fields)  { a.log(slog.LevelDebug, msg, f) }
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) {
	if a.sent != nil && msg == "sent update" {
		a.sent.onSentUpdate(f)
	}
	a.log(slog.LevelDebug-4, msg, f)
}

func (a slogAdapter) SetLevel(gobgplog.LogLevel) {}

func (a slogAdapter) GetLevel() gobgplog.LogLevel {
	if a.sent != nil {
		return gobgplog.DebugLevel
	}
	ctx := context.Background()
	switch {
	case a.l.Enabled(ctx, slog.LevelDebug-4):
		return gobgplog.DebugLevel
	case a.l.Enabled(ctx, slog.LevelDebug):
		return gobgplog.InfoLevel
	case a.l.Enabled(ctx, slog.LevelWarn):
		return gobgplog.WarnLevel
	}
	return gobgplog.ErrorLevel
}
