package phase

import (
	"context"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

// SSHClient returns the pooled connection to ep (a jump host, the bastion
// or a server), dialing it through its own hops when needed.
func (m *Manager) SSHClient(ctx context.Context, ep ssh.Endpoint) (*ssh.Client, error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	return m.pool.Client(ctx, ep)
}
