package bgpagent

import (
	"context"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// APIServerService is the service of the rendered agent configuration that
// announces the Kubernetes API VIP on control-plane servers (gated by the
// local kube-apiserver's /readyz).
const APIServerService = bgp.APIServerService

// Hold withdraws service's VIPs from the host before what serves them
// stops: it runs `tricenter-bgp hold SERVICE --reason REASON` on the host,
// which returns once the withdrawal has been sent to every established
// peer. The VIPs stay withdrawn (whatever the health check says) until
// Release; a hold survives an agent restart but not a reboot. Holding a
// held service again only updates the reason.
func Hold(ctx context.Context, h *phase.Host, service, reason string) error {
	return hold(ctx, h, service, reason)
}

// Release removes the hold Hold put on service: the agent announces its
// VIPs again once the health check has passed Rise times. Releasing a
// service that is not held changes nothing.
func Release(ctx context.Context, h *phase.Host, service string) error {
	return release(ctx, h, service)
}

func hold(ctx context.Context, h *phase.Host, service, reason string) error {
	cmd := BinaryPath + " hold " + shell.Quote(service) + " --reason " + shell.Quote(reason)
	if err := h.Run(ctx, phase.Command{Cmd: cmd, Sudo: true,
		Describe: "hold BGP service " + service + " (withdraw its VIPs)"}); err != nil {
		return fmt.Errorf("holding BGP service %s: %w", service, err)
	}
	return nil
}

func release(ctx context.Context, h *phase.Host, service string) error {
	cmd := BinaryPath + " release " + shell.Quote(service)
	if err := h.Run(ctx, phase.Command{Cmd: cmd, Sudo: true,
		Describe: "release BGP service " + service}); err != nil {
		return fmt.Errorf("releasing BGP service %s: %w", service, err)
	}
	return nil
}
