package bgpagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// APIServerService is the service of the rendered agent configuration that
// announces the Kubernetes API VIP on control-plane servers (gated by the
// local kube-apiserver's /readyz).
const APIServerService = bgp.APIServerService

// LoadBalancersService is the service of the rendered agent configuration
// that announces the load-balancer VIPs on every node (gated by the local
// kube-proxy's /healthz).
const LoadBalancersService = bgp.LoadBalancersService

// Hold withdraws service's VIPs from the host before what serves them
// stops: it runs `tricenter-bgp hold SERVICE --reason REASON` on the host,
// which returns once the withdrawal has been written to every established
// BGP session. The VIPs stay withdrawn, whatever the health check says,
// until Release; a hold survives an agent restart but not a reboot. Holding
// a held service again only updates the reason. ctx's deadline, if any,
// bounds the wait on the host too (else the command's 30 s). A VIP that
// stays announced because another healthy service on the host lists it
// is an error (ErrVIPKept): requests to it would still reach the host.
//
// Hold then waits RouteSettle, so that once it returns the routers have
// also moved the VIP's traffic off the host and the caller may stop the
// service at once.
func Hold(ctx context.Context, h *phase.Host, service, reason string) error {
	return hold(ctx, h, nodeCLI(), service, reason, RouteSettle)
}

// RouteSettle is how long Hold waits after the withdrawal was written to
// the sessions: a router applies a withdrawal to its BGP table as soon as
// it reads it, but moves traffic (best path, kernel FIB) after its route
// processing delay — FRR batches it with a 50 ms hold; TestHoldAgainstFRR
// measures about 65 ms from the withdrawal to the kernel route.
const RouteSettle = 250 * time.Millisecond

// Release removes the hold Hold put on service: the agent announces its
// VIPs again once the health check has passed rise times. Releasing a
// service that is not held changes nothing.
func Release(ctx context.Context, h *phase.Host, service string) error {
	return release(ctx, h, nodeCLI(), service)
}

// runner runs a command on a node through the mutation gate; *phase.Host
// is one.
type runner interface {
	String() string
	DryRun() bool
	Run(ctx context.Context, c phase.Command) error
	Logf(format string, args ...any)
}

var _ runner = (*phase.Host)(nil)

// agentCLI is the agent's command line on a node: the installed binary
// and its configuration (empty: the binary's default, DefaultConfigFile).
type agentCLI struct {
	bin, config string
}

func nodeCLI() agentCLI { return agentCLI{bin: BinaryPath} }

// command renders `BIN VERB ARGS... [--config FILE] [--timeout D] -o json`.
func (c agentCLI) command(ctx context.Context, verb string, args ...string) string {
	parts := []string{c.bin, verb}
	for _, a := range args {
		parts = append(parts, shell.Quote(a))
	}
	if c.config != "" {
		parts = append(parts, "--config", shell.Quote(c.config))
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl).Truncate(time.Millisecond); d > 0 {
			parts = append(parts, "--timeout", d.String())
		}
	}
	return strings.Join(append(parts, "-o", "json"), " ")
}

func hold(ctx context.Context, h runner, cli agentCLI, service, reason string, settle time.Duration) error {
	if err := bgp.CheckServiceName(service); err != nil {
		return err
	}
	if err := bgp.CheckHoldReason(reason); err != nil {
		return fmt.Errorf("holding BGP service %s: %w", service, err)
	}
	var out bytes.Buffer
	err := h.Run(ctx, phase.Command{Cmd: cli.command(ctx, "hold", service, "--reason", reason), Sudo: true, Stdout: &out,
		Describe: fmt.Sprintf("hold BGP service %s (withdraw its VIPs): %s", service, reason)})
	if err != nil {
		return fmt.Errorf("holding BGP service %s (its VIPs may still be announced: do not stop it): %w", service, err)
	}
	if h.DryRun() {
		return nil
	}
	var res bgp.HoldResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return fmt.Errorf("holding BGP service %s: unreadable answer from tricenter-bgp: %w", service, err)
	}
	if len(res.Kept) > 0 {
		var kept []string
		for _, v := range sortedKeys(res.Kept) {
			kept = append(kept, fmt.Sprintf("%s (also listed by %s)", v, strings.Join(res.Kept[v], ", ")))
		}
		return fmt.Errorf("%w: %s held, but %s: hold those services too", ErrVIPKept, service, strings.Join(kept, ", "))
	}
	msg := fmt.Sprintf("BGP service %s held: ", service)
	switch {
	case len(res.Withdrawn) == 0:
		msg += "its VIPs were not announced"
	case len(res.Peers) == 0:
		msg += strings.Join(res.Withdrawn, ", ") + " withdrawn (no established session)"
	default:
		msg += strings.Join(res.Withdrawn, ", ") + " withdrawn, sent to " + strings.Join(res.Peers, ", ")
	}
	if len(res.Lost) > 0 {
		// Those routers dropped the routes with the session, or drop them
		// within the graceful-restart time.
		msg += "; sessions that ended first: " + strings.Join(res.Lost, ", ")
	}
	h.Logf("%s", msg)
	if len(res.Withdrawn) == 0 || len(res.Peers) == 0 {
		return nil
	}
	select {
	case <-time.After(settle):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("holding BGP service %s: waiting for the routers to move its traffic: %w", service, ctx.Err())
	}
}

// ErrVIPKept is wrapped by Hold when a VIP of the held service stays
// announced because another healthy, unheld service on the host lists it:
// requests to it would still reach the host.
var ErrVIPKept = errors.New("VIP still announced")

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func release(ctx context.Context, h runner, cli agentCLI, service string) error {
	if err := bgp.CheckServiceName(service); err != nil {
		return err
	}
	if err := h.Run(ctx, phase.Command{Cmd: cli.command(ctx, "release", service), Sudo: true,
		Describe: "release BGP service " + service}); err != nil {
		return fmt.Errorf("releasing BGP service %s: %w", service, err)
	}
	return nil
}
