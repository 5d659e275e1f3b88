// Package cliflags holds what the command-line front ends (tricenter,
// tricenter-lab, tricenter-bgp) share, so that they spell it the same way:
// the --log-format and --log-level flags and the logger they build, the
// -o table|json flag and its JSON, and the process's Ctrl-C handling
// (Interrupts).
package cliflags

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
)

// Logging holds --log-format and --log-level; it lives in a command's
// globals struct, never in a package variable.
type Logging struct {
	Format string // text or json
	Level  string // debug, info, warn or error
}

// Register adds --log-format and --log-level to fs (a root command's
// persistent flags).
func (l *Logging) Register(fs *pflag.FlagSet) {
	fs.StringVar(&l.Format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug, info, warn or error")
}

// Logger is the logger the flags ask for, writing to w.
func (l *Logging) Logger(w io.Writer) (*slog.Logger, error) {
	return logging.New(w, l.Format, l.Level)
}

// Output formats of -o.
const (
	Table = "table"
	JSON  = "json"
)

// AddOutput registers -o table|json on cmd, with its shell completion.
func AddOutput(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", Table, "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{Table, JSON}, cobra.ShellCompDirectiveNoFileComp
	})
}

// CheckOutput refuses an -o value other than table or json.
func CheckOutput(o string) error {
	if o != Table && o != JSON {
		return fmt.Errorf("--output %q: use table or json", o)
	}
	return nil
}

// WriteJSON writes v to w as -o json prints it: indented by two spaces,
// one value followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
