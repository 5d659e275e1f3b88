package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/lab"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/version"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:     "tricenter-lab",
		Version: version.Get().String(),
		Short:   "A two-site, three-center datacenter on this machine to try tricenter on",
		Long: `tricenter-lab builds a datacenter on this machine from a lab description
(examples/lab/lab.yaml): systemd-nspawn machines and libvirt VMs as servers,
each powered off behind its own ipmi_sim BMC whose power really boots and cuts
it, a jump host per center (the only way into its racks), FRR playing the
TORs, and the centers' latencies. It writes the tricenter inventory of what it
built, so apply, drill and the Terraform provider work against it unchanged.
Needs root; every address is in 198.19.0.0/16 and nothing leaves the machine.`,
		Example: `  sudo tricenter-lab up -f examples/lab/lab.yaml
  sudo tricenter-lab status
  sudo tricenter bmc on -f .cache/lab/lab/inventory.yaml
  sudo tricenter apply -f .cache/lab/lab/inventory.yaml --wait-reachable 5m --yes
  sudo tricenter-lab down`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	g.logFlags.Register(cmd.PersistentFlags())
	cmd.AddCommand(newLabUpCmd(g), newLabDownCmd(g), newLabStatusCmd(g), newLabServeCmd(g))
	return cmd
}

type labFlags struct {
	spec, dir string
}

func (f *labFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.spec, "file", "f", "examples/lab/lab.yaml", "lab description")
	cmd.Flags().StringVar(&f.dir, "dir", "", "lab directory (default .cache/lab/NAME)")
}

func (f *labFlags) resolveDir() (string, error) { return lab.ResolveDir(f.spec, f.dir) }

func newLabUpCmd(g *globals) *cobra.Command {
	var f labFlags
	var artifacts string
	cmd := &cobra.Command{
		Use:   "up [-f LAB.yaml] [--dir DIR]",
		Short: "Build the lab and leave it running in the background (idempotent)",
		Long: `up builds the lab and returns once every BMC answers: the servers are
powered off until something powers them on through their BMCs. The lab keeps
running in the background until "tricenter-lab down". Running up again on a
lab that is up does nothing; a lab whose process died is cleaned up and built
again.
The first run builds the machines' root filesystem and the VM image (a few
minutes); later runs take seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			rec, err := lab.Up(cmd.Context(), exe, lab.Options{SpecFile: f.spec, Dir: f.dir, ArtifactDir: artifacts}, g.stderr)
			if err != nil {
				return err
			}
			rep, err := lab.Status(cmd.Context(), rec.Dir)
			if err != nil {
				return err
			}
			rep.Print(g.stdout)
			fmt.Fprintf(g.stdout, "\nNext: tricenter bmc on -f %[1]s, then tricenter apply -f %[1]s --wait-reachable 5m;\nor terraform apply -var-file=%[2]s in examples/lab\n", rec.Inventory, rec.TFVars)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&artifacts, "artifact-dir", "", "artifact directory written into the inventory (default .cache/artifacts)")
	return cmd
}

func newLabDownCmd(g *globals) *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "down [-f LAB.yaml] [--dir DIR]",
		Short: "Tear the lab down and check that nothing of it is left",
		Long: `down stops the lab's machines, VMs, BMCs, router and jump hosts, removes its
networks and directory, and then checks that none of its processes,
namespaces, links, machine cgroups, mounts, libvirt domains or libvirt
iptables chains remain. It also cleans up after a lab whose process crashed.
Only the LIBVIRT_* iptables chains that appeared after the lab started its
own libvirtd are its to remove: chains that were there before stay, and a
lab that used a libvirtd already running removes none.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := f.resolveDir()
			if err != nil {
				return err
			}
			return lab.Down(cmd.Context(), dir, g.stdout)
		},
	}
	f.add(cmd)
	return cmd
}

func newLabStatusCmd(g *globals) *cobra.Command {
	var f labFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status [-f LAB.yaml] [--dir DIR] [-o table|json]",
		Short: "Show the lab: every server's center, address, BMC and power state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			dir, err := f.resolveDir()
			if err != nil {
				return err
			}
			rep, err := lab.Status(cmd.Context(), dir)
			if err != nil {
				return err
			}
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, map[string]any{"lab": rep.Record, "running": rep.Running, "power": rep.Power})
			}
			rep.Print(g.stdout)
			return nil
		},
	}
	f.add(cmd)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func newLabServeCmd(g *globals) *cobra.Command {
	var f labFlags
	var artifacts string
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Run the lab in the foreground (what up starts in the background)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return lab.Serve(ctx, lab.Options{SpecFile: f.spec, Dir: f.dir, ArtifactDir: artifacts, Logger: log})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&artifacts, "artifact-dir", "", "artifact directory written into the inventory")
	return cmd
}
