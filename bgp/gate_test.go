package bgp

import (
	"errors"
	"strings"
	"testing"
)

func TestGate(t *testing.T) {
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	ok := func(name string) *Status {
		n, _ := p.Node(name)
		s := &Status{Node: name, ASN: n.ASN, Announced: []Announced{{Prefix: n.PodCIDR.String()}}}
		for _, pe := range n.Peers {
			s.Sessions = append(s.Sessions, Session{Name: pe.Name, Address: pe.Address.String(), State: "Established", UptimeSeconds: 61})
		}
		return s
	}
	all := map[string]*Status{"n1": ok("n1"), "n2": ok("n2"), "n3": ok("n3"), "n4": ok("n4")}
	rep := Gate(p, all, nil, GateOptions{})
	if !rep.OK {
		t.Fatalf("gate failed: %+v", rep)
	}
	if !strings.Contains(strings.Join(rep.Nodes[0].Notes, ""), "does not announce the API VIP") {
		t.Errorf("n1 notes %v: want the missing API VIP noted", rep.Nodes[0].Notes)
	}
	if rep := Gate(p, all, nil, GateOptions{RequireAPIVIP: true}); rep.OK {
		t.Error("gate passed without API VIPs although they are required")
	}

	bad := map[string]*Status{"n1": ok("n1"), "n2": ok("n2"), "n3": ok("n3")}
	bad["n2"].Sessions[0].State = "Active"
	bad["n3"].Announced = nil
	bad["n1"].ASN = 1
	rep = Gate(p, bad, map[string]error{"n4": errors.New("dial tcp: no route to host")}, GateOptions{})
	if rep.OK {
		t.Fatal("gate passed")
	}
	want := map[string]string{
		"n1": "runs AS 1",
		"n2": "session with core-a1 (198.18.32.1) is Active",
		"n3": "does not announce its pod CIDR",
		"n4": "no status: dial tcp",
	}
	for _, n := range rep.Nodes {
		if n.OK || !strings.Contains(strings.Join(n.Problems, "; "), want[n.Node]) {
			t.Errorf("%s: ok %v, problems %v; want %q", n.Node, n.OK, n.Problems, want[n.Node])
		}
	}
}
