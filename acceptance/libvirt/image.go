package libvirt

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// Image is the shared base of every VM: a qcow2 disk holding an ext4 root
// file system (no partition table: the kernel mounts /dev/vda), and the
// kernel and initramfs copied out of its /boot for direct kernel boot. VMs
// never write to it: each gets a qcow2 overlay (Define).
type Image struct {
	Disk, Kernel, Initrd string
}

// Packages the guest holds besides debootstrap's minbase: those of the
// nspawn machines (so the same node agents run in both tiers), the Debian
// cloud kernel (virtio drivers, small), udev for the devices a VM has and
// an nspawn machine does not, sudo, and e2fsprogs for the root file
// system.
var Packages = append(slices.Clone(nspawn.Packages), "linux-image-cloud-amd64", "udev", "sudo", "e2fsprogs")

// imageRecipe changes whenever the customisation below changes, so the
// cache key follows it.
const imageRecipe = "v2: ext4 on vda, no host keys, sshd key-only, seed unit from vdb, network from ip=, no container runtime, overlay+br_netfilter at boot, timers disabled"

// ImageSize is the virtual size of the root disk. The file system is made
// this large (sparse); the qcow2 base and the overlays hold only what is
// written.
const ImageSize = "8G"

// placeholderMachineID is the image's /etc/machine-id: a valid ID, so
// that systemd does not treat a VM's first boot as a "first boot" (which
// applies unit presets and so re-enables the timers disabled below). Each
// VM gets its own ID on the kernel command line (systemd.machine_id=,
// which systemd writes to /etc/machine-id) and from its seed.
const placeholderMachineID = "74726963656e746572696d6167650001"

// EnsureImage returns the cached VM image under cacheDir/libvirt, building
// it first if needed (debootstrap, then mke2fs -d and qemu-img convert: a
// few minutes). Concurrent callers, in this process or others, wait for
// one build. The Debian mirror is nspawn.DefaultMirror unless
// TRICENTER_DEBIAN_MIRROR says otherwise.
func EnsureImage(ctx context.Context, cacheDir string, log *slog.Logger) (*Image, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mirror := os.Getenv("TRICENTER_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = nspawn.DefaultMirror
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(nspawn.Suite + "\n" + strings.Join(Packages, ",") + "\n" + imageRecipe))
	base := filepath.Join(cacheDir, "libvirt")
	dir := filepath.Join(base, "image-"+hex.EncodeToString(h[:6]))
	img := &Image{
		Disk:   filepath.Join(dir, "disk.qcow2"),
		Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"),
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(base, "image.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := fsutil.Lock(ctx, lock); err != nil {
		return nil, fmt.Errorf("waiting for another build of the VM image in %s: %w", base, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "recipe")); err == nil {
		return img, nil
	}
	// Holding the lock, every build directory is a leftover of a build
	// that was killed.
	stale, _ := filepath.Glob(filepath.Join(base, "image-*.tmp-*"))
	for _, s := range stale {
		log.Info("Removing an unfinished VM image build", "dir", s)
		if err := removeBuildDir(s); err != nil {
			return nil, err
		}
	}
	for _, bin := range []string{"debootstrap", "mke2fs", "qemu-img", "chroot"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("building the VM image needs %s: run make deps (hack/packages.txt)", bin)
		}
	}
	tmp := dir + ".tmp-" + randHex(3)
	defer func() { _ = removeBuildDir(tmp) }()
	root := filepath.Join(tmp, "root")
	log.Info("Building the VM image with debootstrap", "dir", dir, "mirror", mirror)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Packages, ","), nspawn.Suite, root, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("debootstrap %s from %s into %s: %w: %s", nspawn.Suite, mirror, root, err, tail(out, 2000))
	}
	log.Info("Customising the VM image", "debootstrap", time.Since(start).Round(time.Second))
	if err := customize(ctx, root); err != nil {
		return nil, fmt.Errorf("customising the VM image in %s: %w", root, err)
	}
	if err := copyBoot(root, filepath.Join(tmp, "vmlinuz"), filepath.Join(tmp, "initrd.img")); err != nil {
		return nil, err
	}
	raw := filepath.Join(tmp, "disk.raw")
	if out, err := exec.CommandContext(ctx, "mke2fs", "-q", "-t", "ext4", "-L", "tcroot", "-d", root, raw, ImageSize).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mke2fs -d %s: %w: %s", root, err, tail(out, 1000))
	}
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(tmp, "disk.qcow2")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img convert %s: %w: %s", raw, err, tail(out, 1000))
	}
	if err := os.Remove(raw); err != nil {
		return nil, err
	}
	// The base is shared by every overlay: nothing may write to it.
	if err := os.Chmod(filepath.Join(tmp, "disk.qcow2"), 0o444); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "recipe"), []byte(imageRecipe+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	log.Info("VM image ready", "dir", dir, "took", time.Since(start).Round(time.Second))
	return img, nil
}

// removeBuildDir removes a build directory, first unmounting what a
// killed debootstrap may have left mounted in it (proc, sys, devpts):
// removing files under a mounted /sys or /proc must never be tried.
func removeBuildDir(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	// Deepest first.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if out, err := exec.Command("umount", "-l", m).CombinedOutput(); err != nil {
			return fmt.Errorf("unmounting %s before removing the unfinished VM image build: %w: %s", m, err, tail(out, 300))
		}
	}
	return os.RemoveAll(dir)
}

// copyBoot copies the newest kernel and its initramfs out of root/boot.
func copyBoot(root, kernel, initrd string) error {
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(ks) == 0 {
		return fmt.Errorf("no kernel in %s/boot: did linux-image-cloud-amd64 install?", root)
	}
	slices.Sort(ks)
	k := ks[len(ks)-1]
	version := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
	if err := copyFile(k, kernel); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(root, "boot", "initrd.img-"+version), initrd); err != nil {
		return fmt.Errorf("the initramfs of kernel %s: %w", version, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// seedUnit gives a VM its identity from its seed disk, netUnit its address
// from the kernel command line; both run at every boot.
const (
	seedUnit = "tricenter-seed.service"
	netUnit  = "tricenter-network.service"
)

type imageFile struct {
	data string
	mode os.FileMode
}

// imageFiles are written into the guest's root file system.
var imageFiles = map[string]imageFile{
	"etc/fstab":      {mode: 0o644, data: "/dev/vda / ext4 rw,errors=remount-ro 0 0\n"},
	"etc/hostname":   {mode: 0o644, data: "localhost\n"},
	"etc/machine-id": {mode: 0o444, data: placeholderMachineID + "\n"},
	// containerd's overlayfs snapshotter; bridged pod traffic through
	// iptables (kube-proxy, CNI).
	"etc/modules-load.d/tricenter.conf":          {mode: 0o644, data: "overlay\nbr_netfilter\n"},
	"etc/ssh/sshd_config.d/tricenter.conf":       {mode: 0o644, data: "# tricenter lab VM\nHostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\nMaxStartups 100:30:200\n"},
	"etc/systemd/journald.conf.d/tricenter.conf": {mode: 0o644, data: "[Journal]\nStorage=volatile\n"},
	"usr/local/sbin/tricenter-seed": {mode: 0o755, data: `#!/bin/sh
# tricenter lab VM: take this VM's identity from its seed disk (/dev/vdb,
# an ext4 file system made with mke2fs -d, attached read-only).
set -eu
mnt=/run/tricenter-seed
mkdir -p "$mnt"
mount -t ext4 -o ro,noload /dev/vdb "$mnt"
trap 'umount "$mnt"' EXIT
install -m 0644 "$mnt/hostname" /etc/hostname
h=$(cat /etc/hostname)
echo "$h" > /proc/sys/kernel/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$h" > /etc/hosts
if mountpoint -q /etc/machine-id; then umount /etc/machine-id; fi
install -m 0444 "$mnt/machine-id" /etc/machine-id
install -m 0600 "$mnt/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$mnt/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d -m 0700 /root/.ssh
install -m 0600 "$mnt/authorized_keys" /root/.ssh/authorized_keys
`},
	"etc/systemd/system/" + seedUnit: {mode: 0o644, data: `[Unit]
Description=tricenter lab: this VM's identity from its seed disk
DefaultDependencies=no
Requires=dev-vdb.device
After=dev-vdb.device systemd-remount-fs.service
Before=sysinit.target ssh.service systemd-machine-id-commit.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tricenter-seed

[Install]
WantedBy=sysinit.target
`},
	"usr/local/sbin/tricenter-network": {mode: 0o755, data: `#!/bin/sh
# tricenter lab VM: configure the static address of the kernel command
# line's ip=ADDR::GW:MASK:HOST:DEV:off unless the kernel already did.
set -eu
v=
for a in $(cat /proc/cmdline); do
	case $a in ip=*) v=${a#ip=} ;; esac
done
[ -n "$v" ] || exit 0
IFS=: read -r addr _ gw mask _ dev _ <<EOF
$v
EOF
dev=${dev:-eth0}
ip link set lo up
ip link set "$dev" up
if ! ip -4 -o addr show dev "$dev" | grep -q " inet $addr/"; then
	ip addr add "$addr/$mask" dev "$dev"
fi
if [ -n "$gw" ]; then
	ip route replace default via "$gw" dev "$dev"
fi
`},
	"etc/systemd/system/" + netUnit: {mode: 0o644, data: `[Unit]
Description=tricenter lab: static address from the kernel command line
DefaultDependencies=no
Requires=sys-subsystem-net-devices-eth0.device
After=sys-subsystem-net-devices-eth0.device
Before=network-pre.target network.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tricenter-network

[Install]
WantedBy=multi-user.target
`},
}

func customize(ctx context.Context, root string) error {
	// Host keys come from each VM's seed: the image must not share one.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	for p, f := range imageFiles {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(path, []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700); err != nil {
		return err
	}
	steps := [][]string{
		// Nothing the lab does not need runs at boot.
		{"systemctl", "disable", "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
			"e2scrub_all.timer", "fstrim.timer", "e2scrub_reap.service"},
		// containerd is tricenter's to install and enable (node/containerd).
		{"systemctl", "enable", "ssh.service", seedUnit, netUnit},
		{"systemctl", "mask", "getty@tty1.service", "systemd-networkd-wait-online.service"},
		{"apt-get", "clean"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, "chroot", append([]string{root}, s...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("chroot %s: %w: %s", strings.Join(s, " "), err, tail(out, 500))
		}
	}
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*"))
	for _, l := range lists {
		if b := filepath.Base(l); b == "lock" || b == "partial" {
			continue
		}
		if err := os.RemoveAll(l); err != nil {
			return err
		}
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
