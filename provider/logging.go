package provider

import (
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
)

// newLogger returns a *slog.Logger whose records go to tflog through the
// logger Terraform put in ctx. Library code (bmc, inventory, the engine)
// logs without a context, so the handler keeps the one of the RPC it was
// built for: build one logger per CRUD call, never one per provider.
func newLogger(ctx context.Context) *slog.Logger {
	return slog.New(&tflogHandler{ctx: ctx})
}

// routeKlog sends what klog logs (client-go logs through it) to tflog
// with the provider-level logger of ctx (Configure's), instead of klog's
// own lines on the plugin's stderr. klog is process-wide and carries no
// context, so its records cannot carry a CRUD call's fields.
func routeKlog(ctx context.Context) { logging.RouteKlog(&tflogHandler{ctx: ctx}) }

// tflogHandler is a slog.Handler writing to tflog. slog levels map to
// tflog's: below Debug is Trace, then Debug, Info, Warn and Error. Which
// records Terraform keeps is TF_LOG / TF_LOG_PROVIDER's business, so every
// record is passed on.
type tflogHandler struct {
	ctx    context.Context
	attrs  []slog.Attr // with their group prefix already applied
	prefix string      // "group." for WithGroup
}

var _ slog.Handler = (*tflogHandler)(nil)

func (h *tflogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *tflogHandler) Handle(_ context.Context, r slog.Record) error {
	fields := make(map[string]any, len(h.attrs)+r.NumAttrs())
	for _, a := range h.attrs {
		addField(fields, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(fields, h.prefix, a)
		return true
	})
	switch {
	case r.Level < slog.LevelDebug:
		tflog.Trace(h.ctx, r.Message, fields)
	case r.Level < slog.LevelInfo:
		tflog.Debug(h.ctx, r.Message, fields)
	case r.Level < slog.LevelWarn:
		tflog.Info(h.ctx, r.Message, fields)
	case r.Level < slog.LevelError:
		tflog.Warn(h.ctx, r.Message, fields)
	default:
		tflog.Error(h.ctx, r.Message, fields)
	}
	return nil
}

func (h *tflogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &tflogHandler{ctx: h.ctx, prefix: h.prefix, attrs: append([]slog.Attr(nil), h.attrs...)}
	for _, a := range attrs {
		a.Key = h.prefix + a.Key
		n.attrs = append(n.attrs, a)
	}
	return n
}

func (h *tflogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &tflogHandler{ctx: h.ctx, attrs: h.attrs, prefix: h.prefix + name + "."}
}

// addField flattens an attribute into fields: groups become dotted keys,
// LogValuers are resolved (bmc.Target logs without its password that
// way), errors and other values become strings or stay scalars.
func addField(fields map[string]any, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			addField(fields, p, g)
		}
		return
	}
	key := strings.TrimSuffix(prefix+a.Key, ".")
	switch a.Value.Kind() {
	case slog.KindString:
		fields[key] = a.Value.String()
	case slog.KindInt64:
		fields[key] = a.Value.Int64()
	case slog.KindUint64:
		fields[key] = a.Value.Uint64()
	case slog.KindFloat64:
		fields[key] = a.Value.Float64()
	case slog.KindBool:
		fields[key] = a.Value.Bool()
	default:
		if err, ok := a.Value.Any().(error); ok {
			fields[key] = err.Error()
			return
		}
		fields[key] = a.Value.String()
	}
}
