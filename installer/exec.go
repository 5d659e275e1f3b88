package installer

import (
	"context"
	"errors"
	"io"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ExecOptions configure Exec.
type ExecOptions struct {
	// Select chooses the servers (empty: every server).
	Select inventory.Selector
	// Command runs through sh on each server.
	Command string
	// Sudo runs it as root (sudo -n for other logins).
	Sudo bool
	// DryRun records "would run …" instead of running.
	DryRun bool
	// Output, when set, gives a server's stdout and stderr writers and a
	// flush called once its command ended.
	Output func(server string) (stdout, stderr io.Writer, flush func())
	// Progress receives the per-server lines ("would run …" in a dry
	// run); nil: none.
	Progress progress.Reporter
}

// ExecResult is how the command ended on one server.
type ExecResult struct {
	Server string
	// Exit is the command's exit status, Signal the signal that killed it.
	Exit   int
	Signal string
	// Err says why the command could not run (no connection, sudo wants a
	// password); Exit and Signal are then meaningless.
	Err error
	// DryRun: nothing ran.
	DryRun bool
}

// Exec runs a command on every server o.Select matches, with the
// engine's fan-out, through the same jump hosts and host key checks as
// the installer. It returns a result per server in inventory order; the
// error joins the servers' errors (a command that ran and exited non-zero
// is a result, not an error).
func (e *Engine) Exec(ctx context.Context, o ExecOptions) ([]ExecResult, error) {
	m := e.Manager(o.DryRun)
	m.Progress = o.Progress
	if m.Progress == nil {
		m.Progress = progress.Discard
	}
	defer m.Close()
	hosts, err := e.selectHosts(m, o.Select)
	if err != nil {
		return nil, err
	}
	res := make([]ExecResult, len(hosts))
	for i, h := range hosts {
		res[i] = ExecResult{Server: h.Name, DryRun: o.DryRun}
	}
	err = eachRow(ctx, m, hosts, res, func(ctx context.Context, h *phase.Host, r *ExecResult) error {
		c := phase.Command{Cmd: o.Command, Sudo: o.Sudo}
		var flush func()
		if o.Output != nil {
			c.Stdout, c.Stderr, flush = o.Output(h.Name)
		}
		err := h.Run(ctx, c)
		if flush != nil {
			flush()
		}
		var ee *ssh.ExitError
		switch {
		case errors.As(err, &ee) && !errors.Is(err, ssh.ErrSudoPassword):
			r.Exit, r.Signal = ee.Status, ee.Signal
			return nil
		case err != nil:
			r.Err = err
		}
		return err
	})
	return res, err
}
