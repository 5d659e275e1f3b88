package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// CNIPlugins are the plugin binaries the node's network needs in
// CNIBinDir (loopback: containerd sets up each pod's lo with it), from the
// artifact set (node/containerd installs them).
var CNIPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

type cniConflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type cniBridge struct {
	Type        string  `json:"type"`
	Bridge      string  `json:"bridge"`
	IsGateway   bool    `json:"isGateway"`
	IPMasq      bool    `json:"ipMasq"`
	HairpinMode bool    `json:"hairpinMode"`
	IPAM        cniIPAM `json:"ipam"`
}

type cniIPAM struct {
	Type    string       `json:"type"`
	Ranges  [][]cniRange `json:"ranges"`
	Routes  []cniRoute   `json:"routes"`
	DataDir string       `json:"dataDir"`
}

type cniRange struct {
	Subnet string `json:"subnet"`
}

type cniRoute struct {
	Dst string `json:"dst"`
}

type cniPortmap struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// RenderCNI renders the node's CNI network: a bridge whose address is the
// pods' gateway, with ipMasq false (pods are routed by BGP, never NATed),
// host-local addresses from the node's pod CIDR, and portmap for hostPort.
func RenderCNI(podCIDR netip.Prefix) ([]byte, error) {
	if !podCIDR.IsValid() {
		return nil, fmt.Errorf("CNI config: invalid pod CIDR")
	}
	def := "0.0.0.0/0"
	if podCIDR.Addr().Is6() {
		def = "::/0"
	}
	c := cniConflist{CNIVersion: "1.0.0", Name: CNINetwork, Plugins: []any{
		cniBridge{Type: "bridge", Bridge: CNIBridge, IsGateway: true, IPMasq: false, HairpinMode: true,
			IPAM: cniIPAM{Type: "host-local", Ranges: [][]cniRange{{{Subnet: podCIDR.Masked().String()}}},
				Routes: []cniRoute{{Dst: def}}, DataDir: CNIStateDir + "/networks"}},
		cniPortmap{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
	}}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// cni writes the conflist (node/containerd installed the plugins) after
// the kernel settings. containerd reads the configuration when it changes:
// no restart.
func (r *run) cni(ctx context.Context, h *phase.Host) error {
	f, err := r.facts(h)
	if err != nil {
		return err
	}
	if err := r.kernel(ctx, h); err != nil {
		return err
	}
	conf, err := RenderCNI(f.podCIDR)
	if err != nil {
		return err
	}
	_, err = h.WriteFile(ctx, CNIConfig, conf, 0o644)
	return err
}

// Kernel settings routed pods and kube-proxy need: forwarding, and
// bridged pod-to-pod replies passing iptables so that a Service's
// backend on the client's own bridge answers through conntrack.
const (
	SysctlConfig  = "/etc/sysctl.d/90-tricenter-k8s.conf"
	ModulesConfig = "/etc/modules-load.d/tricenter-k8s.conf"
	sysctls       = "# Written by tricenter.\nnet.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n"
	modules       = "# Written by tricenter.\nbr_netfilter\n"
)

// kernel loads br_netfilter (bare metal: an nspawn machine shares the
// host's kernel and cannot load modules) and applies the sysctls, each
// only when its file changed or the setting is missing.
func (r *run) kernel(ctx context.Context, h *phase.Host) error {
	if r.o.Profile != ProfileNspawn {
		mod, err := h.WriteFile(ctx, ModulesConfig, []byte(modules), 0o644)
		if err != nil {
			return err
		}
		loaded, err := h.Query(ctx, "test -e /proc/sys/net/bridge/bridge-nf-call-iptables && echo yes || true")
		if err != nil {
			return fmt.Errorf("checking for br_netfilter: %w", err)
		}
		if mod.Changed || trim(loaded) != "yes" {
			if _, err := h.Sudo(ctx, "modprobe br_netfilter"); err != nil {
				return fmt.Errorf("loading br_netfilter: %w", err)
			}
		}
	}
	sc, err := h.WriteFile(ctx, SysctlConfig, []byte(sysctls), 0o644)
	if err != nil {
		return err
	}
	now, err := h.Query(ctx, "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo absent")
	if err != nil {
		return fmt.Errorf("reading sysctls: %w", err)
	}
	v := strings.Fields(now)
	if sc.Changed || len(v) != 2 || v[0] != "1" || (v[1] != "1" && v[1] != "absent") {
		// -e: a kernel without br_netfilter (a container) keeps its bridge default.
		if _, err := h.Sudo(ctx, "sysctl -q -e -p "+SysctlConfig); err != nil {
			return fmt.Errorf("applying %s: %w", SysctlConfig, err)
		}
	}
	return nil
}
