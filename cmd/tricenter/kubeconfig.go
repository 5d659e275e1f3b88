package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

// Flags that lift the refusals of --user.
const (
	flagAllowSystemGroups = "allow-system-groups"
	flagAllowLongTTL      = "allow-long-ttl"
	flagBreakGlass        = "break-glass"
)

// breakGlassWarning goes to stderr whenever --break-glass hands out the
// system:masters credential.
const breakGlassWarning = `WARNING: this is the break-glass credential: user tricenter-break-glass in
system:masters, which passes every authorization check and which no RBAC
change can revoke (only a new Kubernetes CA can). Use it only to repair the
cluster when the admin kubeconfig no longer works (its ClusterRoleBinding
tricenter:cluster-admins deleted or broken: the next tricenter apply puts it
back), keep it off shared disks, and delete it when done.
`

func newKubeconfigCmd(g *globals) *cobra.Command {
	var f engineFlags
	var out, format, user, server string
	var groups []string
	var ttl time.Duration
	var allowSystem, allowLong, breakGlass bool
	cmd := &cobra.Command{
		Use:   "kubeconfig -f FILE [--output-file PATH] [-o yaml|json] [--user NAME --group G --ttl 8h | --break-glass]",
		Short: "Write the admin kubeconfig (0600), or a short-lived one for a user",
		Long: `kubeconfig writes a kubeconfig for the cluster's API VIP, atomically and
mode 0600 (it holds a private key), to --output-file PATH or to stdout, in
YAML or, with -o json, JSON (kubectl reads both).

Without --user it is the admin kubeconfig kept in the state directory's PKI:
user tricenter-admin in group tricenter:cluster-admins, which apply binds to
cluster-admin with the ClusterRoleBinding tricenter:cluster-admins (deleting
the binding revokes it; a cluster installed by an earlier release keeps a
system:masters admin until its next apply switches it). With --break-glass
it is the emergency credential instead (user tricenter-break-glass in
system:masters, kept only in the state, never written unless asked for),
with a warning on stderr. With --user it is a new client certificate for that
user and --group(s), valid for --ttl (at most 24h unless --allow-long-ttl)
and stored nowhere: RBAC decides what it may do. Users and groups starting
with system: (system:masters, system:nodes, system:node:NAME,
system:serviceaccount:...), the admin's group and the cluster components'
user names are refused unless --allow-system-groups. Every certificate
issued is recorded (serial, subject, groups, validity, who asked, never a
key) in the state's issued-certificate log: tricenter kubeconfig issued
prints it.`,
		Example: `  tricenter kubeconfig -f cluster.yaml --output-file admin.conf
  tricenter kubeconfig -f cluster.yaml --user alice --group platform --ttl 8h --output-file alice.conf
  tricenter kubeconfig -f cluster.yaml -o json | jq -r '.clusters[0].cluster.server'
  tricenter kubeconfig issued -f cluster.yaml
  tricenter kubeconfig -f cluster.yaml --break-glass --output-file /root/break-glass.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "yaml" && format != "json" {
				return fmt.Errorf("-o %q: use yaml or json (-o is the output format; write to a file with --output-file %s)", format, format)
			}
			if breakGlass && user != "" {
				return fmt.Errorf("--%s is the cluster's own emergency credential: it takes no --user", flagBreakGlass)
			}
			if user == "" {
				for _, name := range []string{"group", "ttl", flagAllowSystemGroups, flagAllowLongTTL} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--%s applies to a user certificate: pass --user NAME too", name)
					}
				}
			} else {
				if cmd.Flags().Changed("server") {
					return errors.New("--server applies to the admin kubeconfig: a --user kubeconfig names the API VIP")
				}
				// The refusals, worded with the flags, before anything is
				// read or issued; the engine checks them again.
				if err := userFlagsError(kubeconfig.CheckIdentity(user, groups, allowSystem), ttl); err != nil {
					return err
				}
				if err := userFlagsError(kubeconfig.CheckTTL(ttl, allowLong), ttl); err != nil {
					return err
				}
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			if _, err := e.EtcdPKI(false); err != nil {
				return fmt.Errorf("%w (run tricenter apply first)", err)
			}
			var data []byte
			switch {
			case breakGlass:
				fmt.Fprint(g.stderr, breakGlassWarning)
				data, err = e.BreakGlassKubeconfig(server)
			case user == "":
				data, err = e.AdminKubeconfig(server)
			default:
				var uc *installer.UserCert
				uc, err = e.IssueUserKubeconfig(installer.UserCertRequest{User: user, Groups: groups, TTL: ttl,
					AllowSystemGroups: allowSystem, AllowLongTTL: allowLong})
				if err != nil {
					return userFlagsError(err, ttl)
				}
				data = uc.Kubeconfig
				fmt.Fprintf(g.stderr, "certificate for %s valid until %s (serial %s, recorded in the issued-certificate log)\n",
					user, uc.Record.NotAfter.UTC().Format(time.RFC3339), uc.Record.Serial)
			}
			if err != nil {
				return err
			}
			if format == "json" {
				j, err := yaml.YAMLToJSON(data)
				if err != nil {
					return fmt.Errorf("converting the kubeconfig to JSON: %w", err)
				}
				var b bytes.Buffer
				if err := json.Indent(&b, j, "", "  "); err != nil {
					return fmt.Errorf("converting the kubeconfig to JSON: %w", err)
				}
				data = append(b.Bytes(), '\n')
			}
			return writeOut(g, out, data, 0o600)
		},
	}
	addEngineFlags(cmd, &f)
	cmd.Flags().StringVar(&out, "output-file", "", "write to PATH (atomically, mode 0600) instead of stdout")
	cmd.Flags().StringVarP(&format, "output", "o", "yaml", "output format: yaml or json")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"yaml", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.Flags().StringVar(&user, "user", "", "issue a short-lived certificate for this user instead of the admin's")
	cmd.Flags().StringSliceVar(&groups, "group", nil, "groups of --user (repeatable)")
	cmd.Flags().DurationVar(&ttl, "ttl", kubeconfig.DefaultUserTTL,
		fmt.Sprintf("validity of the --user certificate (at most %s; up to %s with --%s)",
			kubeconfig.FormatDuration(kubeconfig.MaxUserTTL), kubeconfig.FormatDuration(kubeconfig.MaxLongUserTTL), flagAllowLongTTL))
	cmd.Flags().BoolVar(&allowSystem, flagAllowSystemGroups, false,
		"let --user and --group name system: users and groups (system:masters bypasses RBAC), the admin group and the components' users")
	cmd.Flags().BoolVar(&allowLong, flagAllowLongTTL, false,
		fmt.Sprintf("let --ttl exceed %s (up to %s)", kubeconfig.FormatDuration(kubeconfig.MaxUserTTL), kubeconfig.FormatDuration(kubeconfig.MaxLongUserTTL)))
	cmd.Flags().BoolVar(&breakGlass, flagBreakGlass, false,
		"write the break-glass credential (system:masters, not revocable by RBAC) instead of the admin's: for emergencies only")
	cmd.Flags().StringVar(&server, "server", "", "API URL in the admin or break-glass kubeconfig (default: the API VIP)")
	// A URL, not a server of the inventory (registerInventoryCompletions).
	_ = cmd.RegisterFlagCompletionFunc("server", cobra.NoFileCompletions)
	cmd.AddCommand(newKubeconfigIssuedCmd(g))
	return cmd
}

// userFlagsError words the refusals of a user certificate with the flags
// that lift them; other errors pass unchanged.
func userFlagsError(err error, ttl time.Duration) error {
	var te *kubeconfig.TTLError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kubeconfig.ErrReservedIdentity):
		return fmt.Errorf("%w; pass --%s to issue it anyway (the issued-certificate log records that you did)", err, flagAllowSystemGroups)
	case !errors.As(err, &te):
		return err
	case te.TooShort:
		return fmt.Errorf("--ttl %s: %w", kubeconfig.FormatDuration(ttl), err)
	case te.Limit == kubeconfig.MaxUserTTL:
		return fmt.Errorf("--ttl %s: %w; use --ttl %s or less, or pass --%s", kubeconfig.FormatDuration(ttl), err,
			kubeconfig.FormatDuration(kubeconfig.MaxUserTTL), flagAllowLongTTL)
	}
	return fmt.Errorf("--ttl %s: %w, the most any certificate is issued for", kubeconfig.FormatDuration(ttl), err)
}

func newKubeconfigIssuedCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output string
	cmd := &cobra.Command{
		Use:   "issued -f FILE [-o table|json]",
		Short: "List the user certificates kubeconfig --user issued (the state's issued-certificate log)",
		Long: `issued prints the state's issued-certificate log, oldest first: every
certificate tricenter kubeconfig --user (or Terraform's tricenter_kubeconfig
with user, when its state is kept) issued, with its serial, user, groups,
validity, the overrides it needed and who asked (OS user, sudo user, host).
The log holds no key and no certificate.`,
		Example: `  tricenter kubeconfig issued -f cluster.yaml
  tricenter kubeconfig issued -f cluster.yaml -o json | jq -r '.[] | select(.subject == "alice") | .serial'`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			recs, err := e.IssuedCertificates()
			if err != nil {
				return err
			}
			if output == cliflags.JSON {
				if recs == nil {
					recs = []state.IssuedCert{}
				}
				return cliflags.WriteJSON(g.stdout, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(g.stderr, "No user certificate issued")
				return nil
			}
			return printIssued(g.stdout, recs, time.Now())
		},
	}
	addReadOnlyEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

// printIssued writes the log as a table, oldest first, marking the
// certificates still valid at now.
func printIssued(w io.Writer, recs []state.IssuedCert, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUED\tSERIAL\tUSER\tGROUPS\tNOT AFTER\tVALID\tREQUESTED BY\tOVERRIDES")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range recs {
		by := r.RequestedBy.User
		if r.RequestedBy.SudoUser != "" {
			by = r.RequestedBy.SudoUser + " (sudo " + by + ")"
		}
		by += "@" + r.RequestedBy.Host
		valid := "expired"
		if now.Before(r.NotAfter) {
			valid = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.IssuedAt.UTC().Format(time.RFC3339), r.Serial, r.Subject,
			dash(strings.Join(r.Groups, ",")), r.NotAfter.UTC().Format(time.RFC3339), valid, by, dash(strings.Join(r.Overrides, ",")))
	}
	return tw.Flush()
}
