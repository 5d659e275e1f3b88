// Package libvirt runs the lab's VM tier: a few libvirt/qemu virtual
// machines (TCG: KVM does not work on the lab machines) that stand for
// servers where the fast nspawn tier cannot: BMC power that really starts
// and stops a machine, a kernel of its own, kernel-level fidelity.
//
// The pieces, in the order a lab uses them:
//
//   - EnsureImage builds, once, a Debian image with the packages of the
//     nspawn machines (the same node agents run on both tiers) plus the
//     Debian cloud kernel, and caches it: a qcow2 base disk holding an
//     ext4 root file system, and the kernel and initramfs for direct
//     kernel boot.
//   - StartDaemon runs virtlogd and libvirtd as children of this process
//     (no systemd here), with a libvirt configuration of their own, unless
//     a libvirtd already answers.
//   - Define creates a VM on an existing Linux bridge (internal/labnet,
//     one per rack): a qcow2 overlay on the base, a read-only seed disk
//     that gives it its host name, machine-id, SSH host key and authorized
//     key, and a static address on the kernel command line. It starts
//     powered off, like a lab server.
//   - Domain.Power plugs the VM into an ipmi_sim BMC (internal/ipmisim):
//     IPMI power on, off, soft off and reset drive virsh.
//   - StartPXE serves network boot (DHCP and TFTP with dnsmasq) to VMs
//     whose BMC's boot device is pxe.
//   - ListDomains, UndefineDomain and SweepIptablesChains clean up after
//     a run that crashed. Daemon.Stop and SweepIptablesChains remove only
//     the LIBVIRT_* iptables chains that appeared after StartDaemon
//     recorded the existing ones, right before it started libvirtd
//     (iptables.go); a Daemon that reused a running libvirtd removes none.
//
// No libvirt network is ever defined or started (not the packaged NAT
// network "default" either): VMs attach to the lab's bridges, and nothing
// is routed or NATed off the machine. Addresses come from 198.18.0.0/15.
//
// Measured on a 2-core lab machine: the image builds in ~80 s (cached:
// microseconds); libvirtd answers ~0.5 s after start; one VM boots from
// IPMI power on to SSH in ~22 s, stops within 2 s of power off and in
// ~4 s of soft off, and its qemu holds ~500 MB of RSS with the 128 MiB TCG
// translation cache. Two cores carry three or four VMs at a time
// (../shared/LAB.md, "libvirt VMs").
//
// Everything needs root; Available says what is missing.
package libvirt

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
)

// URI is the libvirt connection every virsh call uses.
const URI = "qemu:///system"

// programs are the binaries the tier runs, with their Debian packages
// (hack/packages.txt).
var programs = []struct{ bin, pkg string }{
	{"virsh", "libvirt-clients"},
	{"libvirtd", "libvirt-daemon"},
	{"virtlogd", "libvirt-daemon"},
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"qemu-img", "qemu-utils"},
	{"mke2fs", "e2fsprogs"},
	{"debootstrap", "debootstrap"},
	{"ssh-keygen", "openssh-client"},
	{"mount", "mount"},
	{"dnsmasq", "dnsmasq-base"},
}

// ipxeROM is the iPXE option ROM qemu gives a virtio NIC (PXE boot).
const ipxeROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"

// Available reports why libvirt VMs cannot run here, or nil: it needs
// root, virsh, libvirtd, virtlogd, qemu-system-x86_64, qemu-img, mke2fs,
// debootstrap, ssh-keygen, mount, dnsmasq and qemu's iPXE ROMs (PXE), and
// the libvirt-qemu user that libvirt-daemon-system creates (libvirtd
// refuses to start without it).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("libvirt VMs need root (libvirtd, bridges, tap devices): run the tests as root")
	}
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", p.bin, p.pkg))
		}
	}
	if _, err := os.Stat(ipxeROM); err != nil {
		missing = append(missing, ipxeROM+" (Debian package ipxe-qemu)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not installed: run make deps (hack/packages.txt)", strings.Join(missing, ", "))
	}
	if _, err := user.Lookup("libvirt-qemu"); err != nil {
		return errors.New("user libvirt-qemu does not exist (libvirtd will not start without it): run make deps (Debian package libvirt-daemon-system)")
	}
	return nil
}
