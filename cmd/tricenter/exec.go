package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
)

func newExecCmd(g *globals) *cobra.Command {
	var f engineFlags
	var sel selectFlags
	var sudo, dryRun bool
	cmd := &cobra.Command{
		Use:   "exec -f FILE [--role R] [--center C] -- COMMAND",
		Short: "Run a command on the selected hosts, with prefixed output and a summary of exit codes",
		Long: `exec runs COMMAND (through sh on each host) on every selected host, at most
--concurrency at once, through the same jump hosts and host key checks as
the installer. Each output line is prefixed with the host name; a summary
of exit codes follows. With --dry-run it prints what it would run.

The exit status is 0 when the command exited 0 everywhere, 1 otherwise.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd.Context(), g, &f, &sel, strings.Join(args, " "), sudo, dryRun)
		},
	}
	addReadOnlyEngineFlags(cmd, &f)
	addSelectFlags(cmd, &sel)
	cmd.Flags().BoolVar(&sudo, "sudo", false, "run as root (sudo -n for other logins)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would run, run nothing")
	return cmd
}

func runExec(ctx context.Context, g *globals, f *engineFlags, sel *selectFlags, command string, sudo, dryRun bool) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	hosts, err := e.Cluster().Select(sel.selector())
	if err != nil {
		return err
	}
	// Output lines are prefixed with the host name, padded to the longest.
	width := 0
	for _, h := range hosts {
		width = max(width, len(h.Name))
	}
	out := &lockedWriter{w: g.stdout}
	o := installer.ExecOptions{Select: sel.selector(), Command: command, Sudo: sudo, DryRun: dryRun,
		Output: func(server string) (io.Writer, io.Writer, func()) {
			prefix := fmt.Sprintf("%-*s | ", width, server)
			stdout, stderr := &prefixWriter{w: out, prefix: prefix}, &prefixWriter{w: out, prefix: prefix}
			return stdout, stderr, func() { stdout.Flush(); stderr.Flush() }
		}}
	if dryRun {
		o.Progress = progress.NewPrinter(out, false)
	}
	res, err := e.Exec(ctx, o)
	if res == nil {
		return err
	}
	codes := map[string][]string{}
	for _, r := range res {
		key := fmt.Sprintf("exit %d", r.Exit)
		switch {
		case r.DryRun:
			key = "dry run"
		case r.Err != nil:
			key = "error"
		case r.Signal != "":
			key = "signal " + r.Signal
		}
		codes[key] = append(codes[key], r.Server)
	}
	fmt.Fprintln(g.stdout)
	failed := false
	for _, k := range slices.Sorted(maps.Keys(codes)) {
		names := codes[k]
		sort.Strings(names)
		fmt.Fprintf(g.stdout, "%-9s %3d %s: %s\n", k, len(names), plural(len(names), "host", "hosts"), strings.Join(names, ", "))
		if k != "exit 0" && k != "dry run" {
			failed = true
		}
	}
	if err != nil {
		for _, e := range unjoin(err) {
			fmt.Fprintln(g.stderr, "Error:", e)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// lockedWriter serializes whole writes from several hosts.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter prefixes every complete line; Flush writes a partial last
// line.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...)); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.w.Write(append(append([]byte(p.prefix), p.buf...), '\n'))
		p.buf = nil
	}
}
