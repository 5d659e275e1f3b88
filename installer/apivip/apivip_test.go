package apivip

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRenderUnit(t *testing.T) {
	u := string(RenderUnit(netip.MustParseAddr("198.19.120.10")))
	for _, want := range []string{"ExecStart=ip addr replace 198.19.120.10/32 dev lo", "ExecStop=-ip addr del 198.19.120.10/32 dev lo",
		"RemainAfterExit=yes", "Before=kube-apiserver.service tricenter-bgp.service", "WantedBy=multi-user.target"} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}

func TestHasAddr(t *testing.T) {
	out := "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n" +
		"1: lo    inet 198.19.120.10/32 scope global lo\\       valid_lft forever\n"
	if !HasAddr(out, netip.MustParseAddr("198.19.120.10")) {
		t.Error("VIP not found")
	}
	if HasAddr(out, netip.MustParseAddr("198.19.120.1")) {
		t.Error("a prefix of the VIP matched")
	}
	if HasAddr("1: lo    inet 198.19.120.100/32 scope global lo", netip.MustParseAddr("198.19.120.10")) {
		t.Error("a longer address matched")
	}
}
