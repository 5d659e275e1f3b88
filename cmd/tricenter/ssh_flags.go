package main

import (
	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// sshFlags are how a command that connects reaches the servers, besides
// the inventory's spec.ssh: every command that builds the engine takes
// them (addEngineFlags).
type sshFlags struct {
	knownHosts []string
	acceptNew  bool
	bastion    string
	bastionKey string
	bastionPin string
}

func addSSHFlags(cmd *cobra.Command, f *sshFlags) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.knownHosts, "known-hosts", nil, "known_hosts file, besides spec.ssh.knownHosts; repeatable")
	fl.BoolVar(&f.acceptNew, "accept-new", false, "trust host keys seen for the first time and record them in the first known_hosts file")
	fl.StringVar(&f.bastion, "bastion", "", "bastion in front of every host and jump host, as [USER@]HOST[:PORT] (replaces spec.ssh.bastion)")
	fl.StringVar(&f.bastionKey, "bastion-key", "", "private key file for the bastion (default: spec.ssh.keyFile)")
	fl.StringVar(&f.bastionPin, "bastion-host-key", "", "the bastion's host key fingerprint (SHA256:…) when known_hosts does not list it")
}

// config sets the engine's SSH fields from the flags (installer.New
// checks them).
func (f *sshFlags) config(c *installer.Config) {
	c.KnownHosts = f.knownHosts
	c.AcceptNewHostKeys = f.acceptNew
	c.Bastion, c.BastionKeyFile, c.BastionHostKey = f.bastion, f.bastionKey, f.bastionPin
}

// selectFlags choose servers: --role, --center, --rack, --host.
type selectFlags struct {
	roles, centers, racks, hosts []string
}

func addSelectFlags(cmd *cobra.Command, f *selectFlags) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.roles, "role", nil, "only hosts with this role (etcd, control-plane, worker); repeatable")
	fl.StringSliceVar(&f.centers, "center", nil, "only hosts in this center; repeatable")
	fl.StringSliceVar(&f.racks, "rack", nil, "only hosts in this rack; repeatable")
	fl.StringSliceVar(&f.hosts, "host", nil, "only this server; repeatable")
}

func (f *selectFlags) selector() inventory.Selector {
	s := inventory.Selector{Centers: f.centers, Racks: f.racks, Servers: f.hosts}
	for _, r := range f.roles {
		s.Roles = append(s.Roles, inventory.Role(r))
	}
	return s
}
