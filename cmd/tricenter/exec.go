package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

func newExecCmd(g *globals) *cobra.Command {
	var f sshFlags
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
			return runExec(cmd.Context(), g, &f, strings.Join(args, " "), sudo, dryRun)
		},
	}
	addSSHFlags(cmd, &f)
	cmd.Flags().BoolVar(&sudo, "sudo", false, "run as root (sudo -n for other logins)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would run, run nothing")
	return cmd
}

func runExec(ctx context.Context, g *globals, f *sshFlags, command string, sudo, dryRun bool) error {
	out := &lockedWriter{w: g.stdout}
	rep := progress.Discard
	if dryRun {
		rep = progress.NewPrinter(out, false)
	}
	m, hosts, err := f.manager(g, dryRun, rep)
	if err != nil {
		return err
	}
	defer m.Close()
	width := 0
	for _, h := range hosts {
		width = max(width, len(h.Name))
	}
	var mu sync.Mutex
	codes := map[string][]string{}
	err = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		prefix := fmt.Sprintf("%-*s | ", width, h.Name)
		stdout := &prefixWriter{w: out, prefix: prefix}
		stderr := &prefixWriter{w: out, prefix: prefix}
		err := h.Run(ctx, phase.Command{Cmd: command, Sudo: sudo, Stdout: stdout, Stderr: stderr})
		stdout.Flush()
		stderr.Flush()
		key := "exit 0"
		var ee *ssh.ExitError
		switch {
		case errors.As(err, &ee) && !errors.Is(err, ssh.ErrSudoPassword):
			key = fmt.Sprintf("exit %d", ee.Status)
			if ee.Signal != "" {
				key = "signal " + ee.Signal
			}
			err = nil
		case err != nil:
			key = "error"
		}
		if dryRun {
			key = "dry run"
		}
		mu.Lock()
		codes[key] = append(codes[key], h.Name)
		mu.Unlock()
		return err
	})
	fmt.Fprintln(g.stdout)
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	failed := false
	for _, k := range keys {
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
