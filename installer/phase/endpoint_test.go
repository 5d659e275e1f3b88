package phase

import (
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestEndpointForChainsBastionJumpAndHost(t *testing.T) {
	c := invgen.Generate(invgen.Default())
	yes, no := true, false
	c.Spec.SSH.Agent = &yes
	c.Spec.SSH.Bastion = &inventory.JumpHost{Address: "10.0.9.1", HostKey: "SHA256:x"}
	c.Spec.Centers[0].JumpHost.Agent = &no
	c.SetDefaults()
	h, _ := c.Host("dc1-r01-s01")
	ep := EndpointFor(c, h, nil)
	if ep.Address != "10.1.0.10" || !ep.Agent || ep.Jump == nil {
		t.Fatalf("host endpoint %+v", ep)
	}
	j := ep.Jump
	if j.Address != "10.1.255.10" || j.Agent || j.Jump == nil || j.Jump.Address != "10.0.9.1" || !j.Jump.Agent {
		t.Fatalf("jump chain %+v -> %+v", j, j.Jump)
	}
	// A run's bastion overrides the inventory's.
	run := &ssh.Endpoint{Name: "run", Address: "10.0.9.9"}
	if ep := EndpointFor(c, h, run); ep.Jump.Jump != run {
		t.Fatalf("run bastion not used: %+v", ep.Jump.Jump)
	}
	// jumpHost: none is a direct connection.
	h.SSH.JumpHost = inventory.JumpNone
	if ep := EndpointFor(c, h, nil); ep.Jump != nil {
		t.Fatalf("jumpHost none: %+v", ep.Jump)
	}
}
