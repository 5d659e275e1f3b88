package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func newKubeconfigCmd(g *globals) *cobra.Command {
	var f engineFlags
	var out, format, user, server string
	var groups []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfig -f FILE [--output-file PATH] [-o yaml|json] [--user NAME --group G --ttl 8h]",
		Short: "Write the admin kubeconfig (0600), or a short-lived one for a user",
		Long: `kubeconfig writes a kubeconfig for the cluster's API VIP, atomically and
mode 0600 (it holds a private key), to --output-file PATH or to stdout, in
YAML or, with -o json, JSON (kubectl reads both).

Without --user it is the admin kubeconfig (group system:masters) kept in the
state directory's PKI. With --user it is a new client certificate for that
user and --group(s), valid for --ttl and stored nowhere: RBAC decides what
it may do.`,
		Example: `  tricenter kubeconfig -f cluster.yaml --output-file admin.conf
  tricenter kubeconfig -f cluster.yaml --user alice --group platform --ttl 8h --output-file alice.conf
  tricenter kubeconfig -f cluster.yaml -o json | jq -r '.clusters[0].cluster.server'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "yaml" && format != "json" {
				return fmt.Errorf("-o %q: use yaml or json (-o is the output format; write to a file with --output-file %s)", format, format)
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
			if user == "" {
				data, err = e.AdminKubeconfig(server)
			} else {
				var until time.Time
				data, until, err = e.UserKubeconfig(user, groups, ttl)
				if err == nil {
					fmt.Fprintf(g.stderr, "certificate for %s valid until %s\n", user, until.UTC().Format(time.RFC3339))
				}
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
	cmd.Flags().DurationVar(&ttl, "ttl", 8*time.Hour, "validity of the --user certificate")
	cmd.Flags().StringVar(&server, "server", "", "API URL in the admin kubeconfig (default: the API VIP)")
	// A URL, not a server of the inventory (registerInventoryCompletions).
	_ = cmd.RegisterFlagCompletionFunc("server", cobra.NoFileCompletions)
	return cmd
}
