package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

// holdFlags locate the agent: its configuration (for the socket, the hold
// directory and the services) or an explicit socket.
type holdFlags struct {
	config, socket, output string
	timeout                time.Duration
}

func (f *holdFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.config, "config", "c", bgp.DefaultConfigFile, "agent configuration file (the socket, hold directory and services)")
	cmd.Flags().StringVar(&f.socket, "socket", "", "the agent's status socket (default: the configuration's statusSocket)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
	cliflags.AddOutput(cmd, &f.output)
}

// load reads the configuration; cfgErr is why it could not (the command
// still talks to an agent on the socket).
func (f *holdFlags) load() (cfg *bgp.Config, socket string, cfgErr error) {
	cfg, cfgErr = bgp.LoadConfig(f.config)
	socket = f.socket
	switch {
	case socket != "":
	case cfgErr == nil:
		socket = cfg.StatusSocket
	default:
		socket = bgp.DefaultStatusSocket
	}
	return cfg, socket, cfgErr
}

func (f *holdFlags) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, f.timeout)
}

func newHoldCmd(g *globals) *cobra.Command {
	var f holdFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "hold SERVICE --reason TEXT",
		Short: "Withdraw a service's VIPs now and keep them withdrawn until release",
		Long: `hold makes the running agent treat SERVICE as unhealthy at once ("held:
TEXT"), whatever its health check says: its VIPs are withdrawn (unless another
healthy, unheld service lists them). It returns once the withdrawal has been
written to every established session, so stop the service only after it
returned. Holding a held service again updates the reason.

The hold is kept in a file in the hold directory (holdDir, default
` + bgp.DefaultHoldDir + `): it survives a restart of the agent, not a reboot.
With no agent running the hold is only recorded (and hold waits out the
graceful-restart time, during which routers may keep the routes of an agent
that was killed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := cliflags.CheckOutput(f.output); err != nil {
				return err
			}
			if err := bgp.CheckServiceName(service); err != nil {
				return err
			}
			if err := bgp.CheckHoldReason(reason); err != nil {
				return fmt.Errorf("--reason: %w", err)
			}
			cfg, socket, cfgErr := f.load()
			ctx, cancel := f.context(cmd)
			defer cancel()
			res, err := bgp.RequestHold(ctx, socket, service, reason)
			note := ""
			if errors.Is(err, bgp.ErrNoAgent) {
				if cfgErr != nil {
					return fmt.Errorf("%w; the hold cannot be recorded without the configuration: %w", err, cfgErr)
				}
				res, note, err = holdOffline(ctx, cfg, service, reason)
			}
			if err != nil {
				return err
			}
			if f.output == cliflags.JSON {
				return cliflags.WriteJSON(g.stdout, res)
			}
			writeHoldResult(g, res, note)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why the service is held (shown by status and in the logs)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// holdOffline records a hold while no agent runs. Nothing announces the
// VIPs then, but routers keep the routes of a killed agent as stale for up
// to the graceful-restart time: wait that out.
func holdOffline(ctx context.Context, cfg *bgp.Config, service, reason string) (*bgp.HoldResult, string, error) {
	if _, ok := cfg.Service(service); !ok {
		return nil, "", bgp.UnknownService(cfg, service)
	}
	dir := cfg.HoldDirectory()
	old, _ := bgp.ReadHolds(dir)
	h := bgp.Hold{Reason: reason, Since: time.Now().UTC().Truncate(time.Second)}
	prev, already := old[service]
	if already && !prev.Since.IsZero() {
		h.Since = prev.Since
	}
	if err := bgp.WriteHold(dir, service, h); err != nil {
		return nil, "", err
	}
	note := "No agent is running on " + cfg.Node + ": the hold is recorded in " + bgp.HoldFile(dir, service) + " and applies when it starts"
	if cfg.Graceful.Enabled && cfg.Graceful.RestartSeconds > 0 {
		d := time.Duration(cfg.Graceful.RestartSeconds) * time.Second
		note += fmt.Sprintf(" (waited the graceful-restart time %s: routers no longer keep routes of a stopped agent)", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, "", fmt.Errorf("hold of %s recorded, but routers may still keep the routes of a stopped agent for up to %s: %w", service, d, ctx.Err())
		}
	}
	return &bgp.HoldResult{Service: service, Hold: h, Already: already, Withdrawn: []string{}, Peers: []string{}}, note, nil
}

func writeHoldResult(g *globals, res *bgp.HoldResult, note string) {
	w := g.stdout
	if res.Already {
		fmt.Fprintf(w, "%s was held already: reason now %q\n", res.Service, res.Hold.Reason)
	} else {
		fmt.Fprintf(w, "Held %s: %s\n", res.Service, res.Hold.Reason)
	}
	if note != "" {
		fmt.Fprintln(w, note)
	}
	if len(res.Withdrawn) > 0 {
		to := "no established session"
		if len(res.Peers) > 0 {
			to = strings.Join(res.Peers, ", ")
		}
		fmt.Fprintf(w, "Withdrawn: %s (sent to %s)\n", strings.Join(res.Withdrawn, ", "), to)
	}
	for _, v := range sortedKeys(res.Kept) {
		fmt.Fprintf(w, "Still announced: %s (healthy service %s lists it)\n", v, strings.Join(res.Kept[v], ", "))
	}
	if len(res.Lost) > 0 {
		fmt.Fprintf(w, "Sessions that ended before the withdrawal reached them: %s\n", strings.Join(res.Lost, ", "))
	}
}

func newReleaseCmd(g *globals) *cobra.Command {
	var f holdFlags
	cmd := &cobra.Command{
		Use:   "release SERVICE",
		Short: "Remove a hold: the service's VIPs are announced again once its check passes",
		Long: `release removes the hold on SERVICE. The agent checks the service again from
scratch: its VIPs are announced after rise consecutive passing checks (at once
for a service without a check). Releasing a service that is not held changes
nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := cliflags.CheckOutput(f.output); err != nil {
				return err
			}
			if err := bgp.CheckServiceName(service); err != nil {
				return err
			}
			cfg, socket, cfgErr := f.load()
			ctx, cancel := f.context(cmd)
			defer cancel()
			res, err := bgp.RequestRelease(ctx, socket, service)
			note := ""
			if errors.Is(err, bgp.ErrNoAgent) {
				if cfgErr != nil {
					return fmt.Errorf("%w; the hold cannot be removed without the configuration: %w", err, cfgErr)
				}
				var removed bool
				removed, err = bgp.RemoveHold(cfg.HoldDirectory(), service)
				res = &bgp.ReleaseResult{Service: service, Released: removed}
				if s, ok := cfg.Service(service); ok && s.Check != nil {
					res.Rise = s.Check.Rise
				} else if !ok && !removed && err == nil {
					err = bgp.UnknownService(cfg, service)
				}
				note = "No agent is running on " + cfg.Node + ": the hold file is removed"
			}
			if err != nil {
				return err
			}
			if f.output == cliflags.JSON {
				return cliflags.WriteJSON(g.stdout, res)
			}
			switch {
			case !res.Released:
				fmt.Fprintf(g.stdout, "%s was not held\n", service)
			case res.Rise > 0:
				fmt.Fprintf(g.stdout, "Released %s: its VIPs are announced again after %d passing check(s)\n", service, res.Rise)
			default:
				fmt.Fprintf(g.stdout, "Released %s: its VIPs are announced again (it has no check)\n", service)
			}
			if note != "" {
				fmt.Fprintln(g.stdout, note)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
