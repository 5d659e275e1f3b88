package installer

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

// DefaultConcurrency is how many hosts the engine works on at once when
// Config.Concurrency does not say.
const DefaultConcurrency = phase.DefaultConcurrency

// resolveSSH turns Config's plain SSH settings (Bastion, KnownHosts,
// AcceptNewHostKeys) into the transport's options, for New.
func (c *Config) resolveSSH() error {
	if c.Bastion == "" && (c.BastionKeyFile != "" || c.BastionHostKey != "") {
		return errors.New("a bastion key file or host key without a bastion (--bastion-key and --bastion-host-key need --bastion)")
	}
	keyFile := c.BastionKeyFile
	if keyFile == "" {
		keyFile = c.Cluster.Spec.SSH.KeyFile
	}
	b, err := parseBastion(c.Bastion, keyFile, c.BastionHostKey)
	if err != nil {
		return err
	}
	c.bastion = b
	c.SSH.KnownHosts = append(append([]string(nil), c.SSH.KnownHosts...), c.KnownHosts...)
	if c.AcceptNewHostKeys {
		c.SSH.HostKeyPolicy = ssh.AcceptNew
	}
	if len(c.SSHKeys) > 0 {
		keys := maps.Clone(c.SSH.Keys)
		if keys == nil {
			keys = map[string][]byte{}
		}
		maps.Copy(keys, c.SSHKeys)
		c.SSH.Keys = keys
	}
	return nil
}

// parseBastion reads [USER@]HOST[:PORT] (an IPv6 address in brackets when
// a port follows); "" is no bastion.
func parseBastion(s, keyFile, hostKey string) (*ssh.Endpoint, error) {
	if s == "" {
		return nil, nil
	}
	ep := &ssh.Endpoint{Name: "bastion", KeyFile: keyFile, HostKey: hostKey}
	rest := s
	if u, r, ok := strings.Cut(rest, "@"); ok {
		ep.User, rest = u, r
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		host, port = rest, "22"
	}
	p, err := strconv.Atoi(port)
	host = strings.Trim(host, "[]")
	if err != nil || p < 1 || p > 65535 || host == "" || strings.ContainsAny(host, "@/ ") || (ep.User == "" && strings.Contains(s, "@")) {
		return nil, fmt.Errorf("bastion %q (--bastion): write it as [USER@]HOST[:PORT]", s)
	}
	ep.Address, ep.Port = host, p
	return ep, nil
}
