package ssh

import (
	"context"
	"net"
)

// DialContext opens a TCP connection from the remote host to addr over
// this SSH connection (a direct-tcpip channel): how API and etcd clients
// reach node networks that are only routable from a jump host.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.c.DialContext(ctx, network, addr)
	if err != nil {
		return nil, c.lost(err)
	}
	return conn, nil
}
