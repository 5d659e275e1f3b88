package bgp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// RackPasswordLabel starts the message RackPassword authenticates: the
// label, then the rack's name.
const RackPasswordLabel = "tricenter-bgp-rack-password:"

// RackPassword derives the TCP-MD5 password of one rack's BGP sessions from
// the cluster's secret (network.bgp.password, resolved):
//
//	base64url(HMAC-SHA256(key = secret, message = RackPasswordLabel + rack)), unpadded
//
// 43 characters of [A-Za-z0-9_-]: no whitespace and no '!', so FRR reads
// it back, and well under TCP-MD5's 80-byte limit. Every node of the rack
// and every router session with that rack uses it; a password read on one
// rack's node or router does not authenticate another rack's sessions, and
// nothing new is configured (docs/cli/bgp.md shows how to compute it for
// routers that `tricenter bgp render-frr` does not configure).
func RackPassword(secret, rack string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(RackPasswordLabel + rack))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// errNoSecret is returned when the inventory sets network.bgp.password but
// the caller passed no resolved secret.
var errNoSecret = errors.New("network.bgp.password is set but its secret was not given (resolve spec.network.bgp.password first)")

// AgentPassword is what a node's agent authenticates its sessions with
// (the content of its ConfigOptions.PasswordFile): its rack's password
// (RackPassword), or "" when the inventory sets no network.bgp.password.
// secret is network.bgp.password resolved. Neither the secret nor the
// password ever appears in an error.
func (p *Plan) AgentPassword(node, secret string) (string, error) {
	if p.Password.IsZero() {
		return "", nil
	}
	n, ok := p.Node(node)
	if !ok {
		return "", fmt.Errorf("no node named %q takes part in BGP", node)
	}
	if secret == "" {
		return "", fmt.Errorf("node %s: %w", node, errNoSecret)
	}
	return RackPassword(secret, n.Rack), nil
}
