package installer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// dialer opens the engine's API connections (etcd clients, the Kubernetes
// API, the gates) the way the installer reaches the servers: directly when
// a server is reached directly, else through the SSH connection of the hop
// in front of it (its center's jump host, or the bastion), as a
// direct-tcpip channel. So `terraform apply` on a workstation reaches node
// networks that are only routable from the jump hosts.
type dialer struct {
	c   *inventory.Cluster
	m   *phase.Manager
	bst *ssh.Endpoint
}

func (e *Engine) dialer(m *phase.Manager) *dialer {
	return &dialer{c: e.cfg.Cluster, m: m, bst: e.cfg.bastion}
}

// hops lists, for addr, the SSH hops to try in order (nil entry = dial
// directly). A server's own address uses the hop in front of that server;
// other addresses (the API VIP, service IPs) use each center's hop in
// inventory order, so a VIP stays reachable while a center is down.
func (d *dialer) hops(addr netip.Addr) []*ssh.Endpoint {
	for _, h := range d.c.Hosts() {
		if h.Addr() == addr {
			return []*ssh.Endpoint{phase.EndpointFor(d.c, h, d.bst).Jump}
		}
	}
	var out []*ssh.Endpoint
	seen := map[string]bool{}
	for _, ctr := range d.c.Spec.Centers {
		for _, h := range d.c.Hosts() {
			if h.Center == nil || h.Center.Name != ctr.Name {
				continue
			}
			j := phase.EndpointFor(d.c, h, d.bst).Jump
			k := "direct"
			if j != nil {
				k = j.Addr() + "/" + j.Name
			}
			if !seen[k] {
				seen[k] = true
				out = append(out, j)
			}
			break
		}
	}
	if len(out) == 0 {
		out = []*ssh.Endpoint{nil}
	}
	return out
}

// DialContext implements the dial function of client-go and grpc.
func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: the engine dials IP addresses only", address)
	}
	var errs []error
	for _, j := range d.hops(a) {
		var conn net.Conn
		var err error
		if j == nil {
			var nd net.Dialer
			conn, err = nd.DialContext(ctx, network, address)
		} else {
			var cli *ssh.Client
			if cli, err = d.m.SSHClient(ctx, *j); err == nil {
				conn, err = cli.DialContext(ctx, network, address)
			}
			if err != nil {
				err = fmt.Errorf("through %s: %w", j, err)
			}
		}
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dialing %s: %w", address, errors.Join(errs...))
}
