// Command tricenter-snapshot takes sealed etcd snapshots on a server (run
// by a systemd timer the installer sets up) and lists the stored ones;
// the logic is package backup.
//
//	tricenter-snapshot take [--config /etc/tricenter/snapshot.json]
//	tricenter-snapshot list [--config FILE | --dir DIR] [-o table|json] [--check]
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code, 1 on any
// error (printed to stderr).
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
}

// globals are the flags every command shares.
type globals struct {
	stdout, stderr io.Writer
	logFlags       cliflags.Logging
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:     "tricenter-snapshot",
		Version: version.Get().String(),
		Short:   "Take sealed etcd snapshots on this server and list the stored ones",
		Long: `tricenter-snapshot runs on etcd servers of a tricenter cluster, started by a
systemd timer. It streams a snapshot from an etcd member of the other site
over mutual TLS, seals it for the operator's public key as it arrives (the
plain snapshot never touches this disk, and this server cannot open it),
stores it with a record and prunes old ones. The installer writes its
configuration (` + backup.DefaultConfigFile + `); the engine fetches the sealed
files and opens them with the private key.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.logFlags.Register(root.PersistentFlags())
	root.AddCommand(newTakeCmd(g), newListCmd(g))
	return root
}

func newTakeCmd(g *globals) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "take [--config FILE]",
		Short: "Take a snapshot, seal and store it, then prune old ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logFlags.Logger(g.stderr)
			if err != nil {
				return err
			}
			cfg, err := backup.LoadConfig(config)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m, err := backup.Take(ctx, cfg, log, time.Now)
			if m.ID != "" {
				fmt.Fprintf(g.stdout, "%s: revision %d, %d keys, %s (sealed %s) from %s (%s)\n",
					m.ID, m.Revision, m.Keys, size(m.PlainBytes), size(m.SealedBytes), m.Member, m.MemberCenter)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", backup.DefaultConfigFile, "snapshot configuration file")
	return cmd
}

// listed is one snapshot as list prints it.
type listed struct {
	backup.Meta
	// Check is "ok" or why the sealed file is not the recorded one
	// (with --check).
	Check string `json:"check,omitempty"`
	// Rehearsal is the last restore of the snapshot into a throw-away
	// etcd (tricenter snapshot verify), or why its record is unreadable.
	Rehearsal      *backup.Rehearsal `json:"rehearsal,omitempty"`
	RehearsalError string            `json:"rehearsalError,omitempty"`
}

func newListCmd(g *globals) *cobra.Command {
	var config, dir, output string
	var check bool
	cmd := &cobra.Command{
		Use:   "list [--config FILE | --dir DIR] [-o table|json] [--check]",
		Short: "List the stored snapshots, newest first",
		Long: `List the stored snapshots, newest first, from the directory the configuration
names (or --dir). With --check each sealed file is hashed and compared with
its record, and the result ("ok" or what differs) is listed with it; the
command still succeeds, so that its caller (the engine's status, over SSH)
reads the whole listing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			if cmd.Flags().Changed("dir") && cmd.Flags().Changed("config") {
				return errors.New("--dir and --config: give one")
			}
			if dir == "" {
				cfg, err := backup.LoadConfig(config)
				if err != nil {
					return err
				}
				dir = cfg.Dir
			}
			d := backup.Dir{Path: dir}
			metas, err := d.List()
			if err != nil {
				return err
			}
			out := make([]listed, len(metas))
			for i, m := range metas {
				out[i].Meta = m
				if r, err := d.Rehearsal(m.ID); err != nil {
					out[i].RehearsalError = err.Error()
				} else {
					out[i].Rehearsal = r
				}
				if check {
					out[i].Check = "ok"
					if err := d.Check(m); err != nil {
						out[i].Check = err.Error()
					}
				}
			}
			if output == cliflags.JSON {
				return cliflags.WriteJSON(g.stdout, out)
			}
			return writeTable(g.stdout, out, check)
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", backup.DefaultConfigFile, "snapshot configuration file (for its directory)")
	cmd.Flags().StringVar(&dir, "dir", "", "snapshot directory (instead of the configuration's)")
	cmd.Flags().BoolVar(&check, "check", false, "hash each sealed file and compare it with its record")
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func writeTable(w io.Writer, rows []listed, check bool) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No snapshots")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "ID\tTAKEN\tMEMBER\tREVISION\tKEYS\tSIZE\tSEALED"
	if check {
		head += "\tCHECK"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%s (%s)\t%d\t%d\t%s\t%s", r.ID, r.TakenAt.UTC().Format(time.RFC3339),
			r.Member, r.MemberCenter, r.Revision, r.Keys, size(r.PlainBytes), size(r.SealedBytes))
		if check {
			line += "\t" + r.Check
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// size is n bytes in IEC units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
