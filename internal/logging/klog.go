package logging

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// klogTarget is where klog's records go. klog's logger is process-wide
// and must not be replaced while other goroutines log, so klog is pointed
// at the forwarder once (klogRouted) and later calls only swap the target.
var (
	klogMu     sync.Mutex
	klogRouted bool
	klogTarget atomic.Pointer[slog.Handler]
)

// RouteKlog sends what klog logs (client-go and the other Kubernetes
// libraries log through it) to h: in the CLI the handler of --log-format
// and --log-level, in the provider the one that writes to tflog. Without
// it klog writes its own format ("I1206 10:00:00.000000 ...") to stderr,
// past both. klog is process-wide: the last handler routed wins. klog's
// warnings arrive at level Info (klog hands them to the logger as info),
// its errors at Error, its V(n) records at level -n. RouteKlog(nil) gives
// klog its own output back (for tests).
func RouteKlog(h slog.Handler) {
	klogMu.Lock()
	defer klogMu.Unlock()
	if h == nil {
		if klogRouted {
			klog.ClearLogger()
			klogRouted = false
		}
		return
	}
	klogTarget.Store(&h)
	if !klogRouted {
		klog.SetSlogLogger(slog.New(klogHandler{}))
		klogRouted = true
	}
}

// klogHandler forwards to the current target, replaying its own
// attributes and groups on it.
type klogHandler struct {
	with []func(slog.Handler) slog.Handler
}

func (k klogHandler) target() slog.Handler {
	h := *klogTarget.Load()
	for _, f := range k.with {
		h = f(h)
	}
	return h
}

func (k klogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return k.target().Enabled(ctx, l)
}

func (k klogHandler) Handle(ctx context.Context, r slog.Record) error {
	return k.target().Handle(ctx, r)
}

func (k klogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return k.and(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

func (k klogHandler) WithGroup(name string) slog.Handler {
	return k.and(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (k klogHandler) and(f func(slog.Handler) slog.Handler) klogHandler {
	return klogHandler{with: append(append([]func(slog.Handler) slog.Handler(nil), k.with...), f)}
}
