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
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// First Ctrl-C (or SIGTERM, SIGHUP) cancels gracefully; the second one
	// exits at once.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-sig
		signal.Ignore(syscall.SIGPIPE)
		fmt.Fprintln(os.Stderr, "\nInterrupted: stopping after the running steps (Ctrl-C again to exit now)")
		cancel()
		<-sig
		os.Exit(130)
	}()
	root := newRootCmd(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}

// globals are the flags every command shares; they live in a struct passed
// down, never in package variables.
type globals struct {
	stdout, stderr io.Writer
	logFormat      string
	logLevel       string
}

func (g *globals) logger() (*slog.Logger, error) {
	return logging.New(g.stderr, g.logFormat, g.logLevel)
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output %q: use table or json", o)
	}
	return nil
}

// addOutputFlag registers -o table|json.
func addOutputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", "table", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
}
