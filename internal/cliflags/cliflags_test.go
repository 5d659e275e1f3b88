package cliflags

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestLoggingFlags: the flags' names, defaults and help are the ones
// docs/cli describes, and the logger follows them.
func TestLoggingFlags(t *testing.T) {
	var l Logging
	cmd := &cobra.Command{Use: "x"}
	l.Register(cmd.PersistentFlags())
	for name, want := range map[string][2]string{
		"log-format": {"text", "log format: text or json"},
		"log-level":  {"info", "log level: debug, info, warn or error"},
	} {
		f := cmd.PersistentFlags().Lookup(name)
		if f == nil || f.DefValue != want[0] || f.Usage != want[1] {
			t.Fatalf("--%s: %+v, want default %q, help %q", name, f, want[0], want[1])
		}
	}
	if err := cmd.PersistentFlags().Parse([]string{"--log-format", "json", "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	// The logger is the one the parsed flags ask for (internal/logging
	// tests the formats and levels themselves).
	var buf bytes.Buffer
	log, err := l.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("Not shown")
	log.Warn("Shown")
	if out := buf.String(); !strings.HasPrefix(out, "{") || !strings.Contains(out, `"msg":"Shown"`) || strings.Contains(out, "Not shown") {
		t.Fatalf("--log-format json --log-level warn logged %q", out)
	}
}

// TestOutputFlag: -o defaults to table, completes table and json, and
// anything else is refused naming the flag.
func TestOutputFlag(t *testing.T) {
	var out string
	cmd := &cobra.Command{Use: "status", RunE: func(*cobra.Command, []string) error { return CheckOutput(out) }}
	AddOutput(cmd, &out)
	f := cmd.Flags().ShorthandLookup("o")
	if f == nil || f.Name != "output" || f.DefValue != "table" || f.Usage != "output format: table or json" {
		t.Fatalf("-o: %+v", f)
	}
	complete, ok := cmd.GetFlagCompletionFunc("output")
	if !ok {
		t.Fatal("-o has no completion")
	}
	if got, dir := complete(cmd, nil, ""); strings.Join(got, ",") != "table,json" || dir != cobra.ShellCompDirectiveNoFileComp {
		t.Fatalf("completion %v %v", got, dir)
	}
	for _, o := range []string{"table", "json"} {
		if err := CheckOutput(o); err != nil {
			t.Errorf("-o %s: %v", o, err)
		}
	}
	cmd.SetArgs([]string{"-o", "yaml"})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err == nil || err.Error() != `--output "yaml": use table or json` {
		t.Fatalf("-o yaml: %v", err)
	}
}

// TestWriteJSON: what -o json prints, indented, one value a line.
func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, map[string]any{"host": "dc1-s01", "ok": true}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"host\": \"dc1-s01\",\n  \"ok\": true\n}\n"; buf.String() != want {
		t.Fatalf("WriteJSON wrote %q, want %q", buf.String(), want)
	}
}

// interruptRun drives watch with a fake signal channel and records what
// it printed and whether it exited.
type interruptRun struct {
	sig      chan os.Signal
	done     chan struct{}
	returned chan struct{}
	exited   chan int
	stderr   *bytes.Buffer
	ctx      context.Context
}

func startWatch(t *testing.T, handOver func() bool) *interruptRun {
	t.Helper()
	r := &interruptRun{sig: make(chan os.Signal), done: make(chan struct{}), returned: make(chan struct{}),
		exited: make(chan int, 1), stderr: &bytes.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	i := Interrupts{Stderr: r.stderr, HandOver: handOver, Exit: func(code int) { r.exited <- code }}
	go func() { i.watch(r.sig, cancel, r.done); close(r.returned) }()
	t.Cleanup(func() {
		select {
		case <-r.returned:
		default:
			close(r.done)
			<-r.returned
		}
		cancel()
	})
	return r
}

func (r *interruptRun) send(t *testing.T, s os.Signal) {
	t.Helper()
	select {
	case r.sig <- s:
	case <-time.After(5 * time.Second):
		t.Fatalf("the watcher did not take %v", s)
	}
}

func (r *interruptRun) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-r.returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not return")
	}
	select {
	case c := <-r.exited:
		return c
	default:
		return -1
	}
}

// TestInterruptsFirstCancelsSecondExits: the first signal cancels the
// context and says so (a hangup named as such), the second exits 130.
func TestInterruptsFirstCancelsSecondExits(t *testing.T) {
	for _, tc := range []struct {
		sig  os.Signal
		line string
	}{
		{os.Interrupt, "\nInterrupted: stopping after the running steps (Ctrl-C again to exit now)\n"},
		{syscall.SIGTERM, "\nInterrupted: stopping after the running steps (Ctrl-C again to exit now)\n"},
		{syscall.SIGHUP, "\nInterrupted (hangup: the terminal or session closed): stopping after the running steps (Ctrl-C again to exit now)\n"},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			r := startWatch(t, nil)
			if r.ctx.Err() != nil {
				t.Fatal("cancelled before any signal")
			}
			r.send(t, tc.sig)
			select {
			case <-r.ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the first signal did not cancel the context")
			}
			if r.stderr.String() != tc.line {
				t.Errorf("stderr %q, want %q", r.stderr.String(), tc.line)
			}
			r.send(t, os.Interrupt)
			if c := r.exitCode(t); c != ExitInterrupted {
				t.Fatalf("the second signal: exit %d, want %d", c, ExitInterrupted)
			}
		})
	}
}

// TestInterruptsHandOver: a command that claimed the second interrupt
// gets it, and only a third exits; one that did not exits on the second.
func TestInterruptsHandOver(t *testing.T) {
	claimed := make(chan struct{})
	r := startWatch(t, func() bool { close(claimed); return true })
	r.send(t, os.Interrupt)
	r.send(t, os.Interrupt)
	select {
	case <-claimed:
	case <-time.After(5 * time.Second):
		t.Fatal("the second signal was not handed over")
	}
	// Still watching: a watcher that had exited would not take a third.
	r.send(t, os.Interrupt)
	if c := r.exitCode(t); c != ExitInterrupted {
		t.Fatalf("the third signal: exit %d, want %d", c, ExitInterrupted)
	}

	r = startWatch(t, func() bool { return false })
	r.send(t, os.Interrupt)
	r.send(t, os.Interrupt)
	if c := r.exitCode(t); c != ExitInterrupted {
		t.Fatalf("unclaimed second signal: exit %d, want %d", c, ExitInterrupted)
	}
}

// TestInterruptsStop: after stop the watcher is gone without exiting,
// and the context is cancelled.
func TestInterruptsStop(t *testing.T) {
	ctx, stop := Interrupts{Stderr: &bytes.Buffer{}, Exit: func(code int) { t.Errorf("exit %d", code) }}.Notify(context.Background())
	if ctx.Err() != nil {
		t.Fatal("cancelled before any signal")
	}
	stop()
	if ctx.Err() == nil {
		t.Fatal("stop did not cancel the context")
	}
}
