// Command tricenter-bgp is the node BGP agent: it peers with the node's TOR
// or core routers, announces the node's pod CIDR, the VIPs of its healthy
// services and, with a loadBalancers section, the LoadBalancer Services
// the node serves (watched through the section's kubeconfig), reloads its
// configuration on SIGHUP without dropping sessions, and withdraws
// everything on SIGTERM/SIGINT before exiting.
//
//	tricenter-bgp run --config /etc/tricenter/bgp/agent.yaml
//	tricenter-bgp status [-o json]
//	tricenter-bgp hold SERVICE --reason TEXT
//	tricenter-bgp release SERVICE
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/agent"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
	"github.com/tricenter/terraform-provider-tricenter/internal/version"
	"github.com/tricenter/terraform-provider-tricenter/lb"
	"github.com/tricenter/terraform-provider-tricenter/lb/watch"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
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

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:     "tricenter-bgp",
		Version: version.Get().String(),
		Short:   "Node BGP agent: announces the pod CIDR and healthy VIPs to the node's routers",
		Long: `tricenter-bgp runs on every node of a tricenter cluster. It peers with the
node's TOR or its site's core routers (from the configuration the installer
renders out of the inventory), announces the node's pod CIDR and the VIPs of
its healthy services, and withdraws them gracefully when stopped.

Signals: SIGHUP reloads the configuration (sessions stay up), SIGTERM or
SIGINT withdraws every announcement and exits.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.logFlags.Register(root.PersistentFlags())
	root.AddCommand(newRunCmd(g), newStatusCmd(g), newHoldCmd(g), newReleaseCmd(g), newCheckCmd(g))
	return root
}

func newRunCmd(g *globals) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "Run the agent in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			// client-go's own messages (the LoadBalancer watch) in the
			// agent's log format.
			logging.RouteKlog(log.Handler())
			cfg, err := bgp.LoadConfig(config)
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), config, cfg, log)
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", bgp.DefaultConfigFile, "agent configuration file")
	return cmd
}

func runAgent(parent context.Context, path string, cfg *bgp.Config, log *slog.Logger) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	speaker := agent.New(cfg, agent.Options{Logger: log, WatchLoadBalancers: watchLoadBalancers(log)})
	errc := make(chan error, 2)
	go func() { errc <- speaker.Run(ctx) }()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go func() {
		if err := bgp.ServeStatus(sctx, cfg.StatusSocket, speaker, log); err != nil {
			errc <- err
		}
	}()
	for {
		select {
		case err := <-errc:
			stop()
			if err != nil {
				return err
			}
			return nil
		case <-hup:
			log.Info("SIGHUP: reloading the configuration", "file", path)
			nc, err := bgp.LoadConfig(path)
			if err != nil {
				log.Error("Reload refused: keeping the running configuration", "err", err)
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = speaker.Reload(rctx, nc)
			cancel()
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("Reload finished with errors", "err", err)
			}
		}
	}
}

// watchLoadBalancers runs an lb/watch Watcher on the kubeconfig of the
// configuration's loadBalancers section.
func watchLoadBalancers(log *slog.Logger) agent.WatchFunc {
	return func(ctx context.Context, node string, c bgp.LoadBalancerConfig, set func([]lb.Route)) func() agent.WatchState {
		w := watch.New(watch.Config{Kubeconfig: c.Kubeconfig, Node: c.Node(node), Prefer: c.Prefer, OnChange: set, Logger: log,
			ProxySynced: watch.KubeProxySynced(bgp.DefaultProxyHealthURL)})
		go func() {
			if err := w.Run(ctx); err != nil {
				log.Error("LoadBalancer watch ended", "node", node, "err", err)
			}
		}()
		return func() agent.WatchState {
			s := w.Status()
			return agent.WatchState{Synced: s.Synced, Services: s.Services, Error: s.Error, ErrorAt: s.ErrorAt}
		}
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	var socket, config, output string
	cmd := &cobra.Command{
		Use:   "status [-o table|json]",
		Short: "Print the running agent's sessions, announced prefixes and service health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			if !cmd.Flags().Changed("socket") && config != "" {
				if cfg, err := bgp.LoadConfig(config); err == nil {
					socket = cfg.StatusSocket
				} else if cmd.Flags().Changed("config") {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := bgp.FetchStatus(ctx, socket)
			if err != nil {
				return err
			}
			if output == cliflags.JSON {
				return cliflags.WriteJSON(g.stdout, s)
			}
			return bgp.WriteStatusTable(g.stdout, s)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", bgp.DefaultStatusSocket, "the agent's status socket")
	cmd.Flags().StringVarP(&config, "config", "c", bgp.DefaultConfigFile, "agent configuration file (to find the socket)")
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "check-config [--config FILE]",
		Short: "Validate a configuration file without running",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := bgp.LoadConfig(config)
			if err != nil {
				return err
			}
			lbs := "no LoadBalancer Services"
			if l := cfg.LoadBalancers; l != nil {
				lbs = fmt.Sprintf("LoadBalancer Services through %s", l.Kubeconfig)
			}
			fmt.Fprintf(g.stdout, "%s: OK (node %s, AS %d, %d peer(s), %d prefix(es), %d service(s), %s)\n",
				config, cfg.Node, cfg.ASN, len(cfg.Peers), len(cfg.Prefixes), len(cfg.Services), lbs)
			return nil
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", bgp.DefaultConfigFile, "agent configuration file")
	return cmd
}
