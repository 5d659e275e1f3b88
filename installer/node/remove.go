package node

import (
	"context"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// stateDirs are the agents' state directories; Remove empties them.
const stateDirs = KubeletStateDir + " " + CNIStateDir

// leftoversCmd prints what Remove would clean up on a host, one word per
// item; nothing when the host is clean.
const leftoversCmd = `for u in ` + KubeletUnit + ` ` + KubeProxyUnit + `; do
  systemctl is-active -q "$u" 2>/dev/null && printf 'running:%s ' "$u"
  systemctl is-enabled -q "$u" 2>/dev/null && printf 'enabled:%s ' "$u"
done
for p in ` + KubeletUnitFile + ` ` + KubeProxyUnitFile + ` ` + BinDir + `/kubelet ` + BinDir + `/kube-proxy ` +
	KubeletDir + ` ` + KubeProxyDir + ` ` + CNIConfig + `; do
  test -e "$p" && printf 'file:%s ' "$p"
done
for d in ` + stateDirs + `; do
  [ -n "$(ls -A "$d" 2>/dev/null)" ] && printf 'state:%s ' "$d"
done
ip link show ` + CNIBridge + ` >/dev/null 2>&1 && printf 'link:` + CNIBridge + ` '
command -v ctr >/dev/null 2>&1 && [ -n "$(ctr -n ` + containerdNS + ` tasks ls -q 2>/dev/null)" ] && printf 'pods '
true`

// removeCmd stops the agents and the pods they left running, undoes
// kube-proxy's rules, and removes the agents' files, the CNI state and the
// pod bridge. containerd, its configuration and the imported images stay
// (a server that rejoins does not import them again).
const removeCmd = `set -u
systemctl disable --now ` + KubeletUnit + ` ` + KubeProxyUnit + ` 2>/dev/null
test -x ` + BinDir + `/kube-proxy && ` + BinDir + `/kube-proxy --cleanup >/dev/null 2>&1
if command -v ctr >/dev/null 2>&1; then
  for t in $(ctr -n ` + containerdNS + ` tasks ls -q 2>/dev/null); do ctr -n ` + containerdNS + ` tasks kill -s SIGKILL "$t" 2>/dev/null; done
  for t in $(ctr -n ` + containerdNS + ` tasks ls -q 2>/dev/null); do ctr -n ` + containerdNS + ` tasks rm -f "$t" 2>/dev/null; done
  for c in $(ctr -n ` + containerdNS + ` containers ls -q 2>/dev/null); do ctr -n ` + containerdNS + ` containers rm "$c" 2>/dev/null; done
fi
for m in $(findmnt -rn -o TARGET 2>/dev/null | grep -E '^` + KubeletStateDir + `/|^/run/netns/cni-' | sort -r); do umount -l "$m" 2>/dev/null; done
rm -f /run/netns/cni-* 2>/dev/null
ip link delete ` + CNIBridge + ` 2>/dev/null
rm -rf ` + KubeletUnitFile + ` ` + KubeProxyUnitFile + ` ` + BinDir + `/kubelet ` + BinDir + `/kube-proxy ` +
	KubeletDir + ` ` + KubeProxyDir + ` ` + CNIConfig + ` ` + SysctlConfig + ` ` + ModulesConfig + ` ` + KernelTunablesConfig + `
# A state directory may be a mount point (its own disk): empty it, keep it.
for d in ` + stateDirs + `; do
  if mountpoint -q "$d"; then find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} + ; else rm -rf "$d"; fi
done
systemctl daemon-reload
systemctl reset-failed ` + KubeletUnit + ` ` + KubeProxyUnit + ` 2>/dev/null
true`

// Remove stops and disables kubelet and kube-proxy on the selected hosts
// and removes their files, the CNI state and the pod bridge. It drains
// nothing itself (addons.DrainAndDelete does the API side first). A clean
// host is left alone, so Remove is idempotent and a dry run lists only the
// hosts that would change.
func Remove(ctx context.Context, m *phase.Manager, sel inventory.Selector) error {
	return m.Run(ctx, &phase.HostPhase{ID: IDRemove,
		Name: "Remove the node agents", Select: sel, Apply: remove,
	})
}

// IDRemove is the ID of the phase Remove runs.
const IDRemove = "node/remove"

func remove(ctx context.Context, h *phase.Host) error {
	left, err := h.Query(ctx, leftoversCmd)
	if err != nil {
		return fmt.Errorf("looking for node agents: %w", err)
	}
	if trim(left) == "" {
		return nil
	}
	h.Logf("removing node agents (%s)", trim(left))
	return h.Run(ctx, phase.Command{Cmd: removeCmd, Sudo: true,
		Describe: "stop and remove kubelet, kube-proxy, pods, CNI state and the " + CNIBridge + " bridge"})
}
