// Command tricenter-lab builds a two-site, three-center datacenter on this
// machine to try tricenter and the Terraform provider on, and to run their
// acceptance tests: servers behind ipmi_sim BMCs, a jump host per center,
// FRR playing the TORs, the centers' latencies.
//
//	tricenter-lab up     [-f examples/lab/lab.yaml] [--dir DIR]
//	tricenter-lab status [-f examples/lab/lab.yaml] [--dir DIR] [-o table|json]
//	tricenter-lab down   [-f examples/lab/lab.yaml] [--dir DIR]
//
// It is a binary of its own so that the operator's tricenter and the
// provider link none of the lab (acceptance/..., internal/ipmisim,
// bgp/bgplab); internal/depcheck checks it.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// First Ctrl-C (or SIGTERM, SIGHUP) cancels gracefully; the second one
	// exits at once.
	ctx, stop := cliflags.Interrupts{Stderr: os.Stderr}.Notify(context.Background())
	defer stop()
	root := newRootCmd(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		if ctx.Err() != nil {
			return cliflags.ExitInterrupted
		}
		return 1
	}
	return 0
}

// globals are the flags every command shares; they live in a struct passed
// down, never in package variables.
type globals struct {
	stdout, stderr io.Writer
	// logFlags are --log-format and --log-level.
	logFlags cliflags.Logging
}

func (g *globals) logger() (*slog.Logger, error) {
	return g.logFlags.Logger(g.stderr)
}
