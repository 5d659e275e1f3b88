package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// sshFlags are the flags of ssh-check and exec: the inventory, which hosts,
// how to reach them and how many at once.
type sshFlags struct {
	file        string
	roles       []string
	centers     []string
	racks       []string
	hosts       []string
	concurrency int
	perCenter   int
	knownHosts  []string
	acceptNew   bool
	bastion     string
	bastionKey  string
	bastionPin  string
}

func addSSHFlags(cmd *cobra.Command, f *sshFlags) {
	addInventoryFlag(cmd, &f.file)
	fl := cmd.Flags()
	fl.StringSliceVar(&f.roles, "role", nil, "only hosts with this role (etcd, control-plane, worker); repeatable")
	fl.StringSliceVar(&f.centers, "center", nil, "only hosts in this center; repeatable")
	fl.StringSliceVar(&f.racks, "rack", nil, "only hosts in this rack; repeatable")
	fl.StringSliceVar(&f.hosts, "host", nil, "only this server; repeatable")
	fl.IntVar(&f.concurrency, "concurrency", phase.DefaultConcurrency, "hosts worked on at once")
	fl.IntVar(&f.perCenter, "per-center", 0, "hosts worked on at once per center (0: no limit)")
	fl.StringSliceVar(&f.knownHosts, "known-hosts", nil, "known_hosts file, besides spec.ssh.knownHosts; repeatable")
	fl.BoolVar(&f.acceptNew, "accept-new", false, "trust host keys seen for the first time and record them in the first known_hosts file")
	fl.StringVar(&f.bastion, "bastion", "", "bastion in front of every host and jump host, as [USER@]HOST[:PORT]")
	fl.StringVar(&f.bastionKey, "bastion-key", "", "private key file for the bastion (default: spec.ssh.keyFile)")
	fl.StringVar(&f.bastionPin, "bastion-host-key", "", "the bastion's host key fingerprint (SHA256:…) when known_hosts does not list it")
}

func (f *sshFlags) selector() inventory.Selector {
	s := inventory.Selector{Centers: f.centers, Racks: f.racks, Servers: f.hosts}
	for _, r := range f.roles {
		s.Roles = append(s.Roles, inventory.Role(r))
	}
	return s
}

// parseBastion reads [USER@]HOST[:PORT].
func parseBastion(s, keyFile, pin string) (*ssh.Endpoint, error) {
	if s == "" {
		return nil, nil
	}
	ep := &ssh.Endpoint{Name: "bastion", KeyFile: keyFile, HostKey: pin}
	if u, rest, ok := strings.Cut(s, "@"); ok {
		ep.User, s = u, rest
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, "22"
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || host == "" {
		return nil, fmt.Errorf("--bastion %q: write it as [USER@]HOST[:PORT]", s)
	}
	ep.Address, ep.Port = strings.Trim(host, "[]"), p
	return ep, nil
}

// sshManager loads the inventory and builds the engine for f.
func (f *sshFlags) manager(g *globals, dryRun bool, rep progress.Reporter) (*phase.Manager, []*phase.Host, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	if f.concurrency < 1 {
		return nil, nil, fmt.Errorf("--concurrency %d: use 1 or more", f.concurrency)
	}
	c, err := g.loadInventory(f.file)
	if err != nil {
		return nil, nil, err
	}
	key := f.bastionKey
	if key == "" {
		key = c.Spec.SSH.KeyFile
	}
	bastion, err := parseBastion(f.bastion, key, f.bastionPin)
	if err != nil {
		return nil, nil, err
	}
	o := ssh.Options{KnownHosts: f.knownHosts}
	if f.acceptNew {
		o.HostKeyPolicy = ssh.AcceptNew
	}
	m := &phase.Manager{Cluster: c, Concurrency: f.concurrency, PerCenter: f.perCenter, DryRun: dryRun,
		Logger: log, Progress: rep, SSH: o, Bastion: bastion}
	hosts, err := m.Hosts(f.selector())
	if err != nil {
		return nil, nil, err
	}
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("no host matches the selection in %s", f.file)
	}
	return m, hosts, nil
}

// via names the hops in front of a host, for tables.
func via(ep ssh.Endpoint) string {
	var hops []string
	for j := ep.Jump; j != nil; j = j.Jump {
		hops = append([]string{j.Name}, hops...)
	}
	if len(hops) == 0 {
		return "-"
	}
	return strings.Join(hops, ">")
}
