// Package nspawn runs the lab's fast tier: one systemd-nspawn machine per
// server of an inventory, booted from a Debian root filesystem built once
// by debootstrap and cached, each machine in its own network namespace on
// a bridge per rack, reached over SSH exactly like a real server. A router
// namespace joins the racks, and a userspace delayer in it gives the
// centers their round-trip times (this kernel has no netem).
//
// Everything needs root, systemd-nspawn (systemd-container), debootstrap,
// iproute2 and ssh-keygen; Available says what is missing.
package nspawn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// Packages the root filesystem holds besides debootstrap's minbase: systemd
// and sshd for the installer; conntrack, iptables and socat for kubelet and
// kube-proxy; kmod for containerd's unit (modprobe overlay); ping for RTT
// checks. No container runtime: tricenter installs containerd 2, runc and
// the CNI plugins from its artifact set (installer/node), as on a real
// server.
var Packages = []string{
	"systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "procps",
	"iputils-ping", "ca-certificates", "kmod", "conntrack", "iptables", "socat",
}

// rootfsRecipe changes whenever the customisation below changes, so the
// cache key follows it.
const rootfsRecipe = "v4: no host keys, sshd key-only, timers disabled, no container runtime, cgroups/proc-sys-net rw unit, journald ReadKMsg=no"

// DefaultMirror is the Debian mirror debootstrap uses unless
// TRICENTER_DEBIAN_MIRROR says otherwise.
const DefaultMirror = "http://deb.debian.org/debian"

// Suite is the Debian release of the machines.
const Suite = "bookworm"

// Available reports why machines cannot be run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("systemd-nspawn machines need root")
	}
	for _, bin := range []string{"systemd-nspawn", "debootstrap", "ip", "ssh-keygen", "mount"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed: run make deps (hack/packages.txt)", bin)
		}
	}
	return nil
}

// CacheDir returns the repository's .cache directory (TRICENTER_CACHE
// overrides it), found by walking up from the working directory to the
// directory holding .git or go.mod of the main module.
func CacheDir() (string, error) {
	if d := os.Getenv("TRICENTER_CACHE"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/tricenter/terraform-provider-tricenter\n") {
			return filepath.Join(d, ".cache"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no tricenter checkout above %s: set TRICENTER_CACHE", wd)
		}
	}
}

// EnsureRootfs returns the cached root filesystem under cacheDir/nspawn,
// building it with debootstrap first if needed (about a minute and a half).
// Concurrent callers wait for one build.
func EnsureRootfs(ctx context.Context, cacheDir string, log *slog.Logger) (string, error) {
	mirror := os.Getenv("TRICENTER_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = DefaultMirror
	}
	h := sha256.Sum256([]byte(Suite + "\n" + strings.Join(Packages, ",") + "\n" + rootfsRecipe))
	base := filepath.Join(cacheDir, "nspawn")
	dir := filepath.Join(base, "rootfs-"+hex.EncodeToString(h[:6]))
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(base, "rootfs.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := fsutil.Lock(ctx, lock); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "etc", "tricenter-rootfs")); err == nil {
		return dir, nil
	}
	tmp := dir + ".tmp-" + randHex(3)
	defer os.RemoveAll(tmp)
	log.Info("Building the machine root filesystem with debootstrap", "dir", dir, "mirror", mirror)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Packages, ","), Suite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap %s: %w: %s", Suite, err, tail(out, 2000))
	}
	if err := customize(ctx, tmp); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "etc", "tricenter-rootfs"), []byte(rootfsRecipe+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	log.Info("Root filesystem ready", "dir", dir, "took", time.Since(start).Round(time.Second))
	return dir, nil
}

func customize(ctx context.Context, root string) error {
	// Host keys are made per machine; the image must not share one.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	sshd := "# tricenter lab machine\nHostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\nMaxStartups 100:30:200\n"
	if err := os.WriteFile(filepath.Join(root, "etc/ssh/sshd_config.d/tricenter.conf"), []byte(sshd), 0o644); err != nil {
		return err
	}
	// Every machine gets its own machine-id at first boot.
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	// Kubernetes inside nspawn (../shared/LAB.md): cgroups and
	// /proc/sys/net writable, / shared for mount propagation, systemd
	// re-probing the controllers; journald must not read /dev/kmsg.
	for p, f := range imageFiles {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	// Nothing the lab does not need runs at boot. containerd's unit is
	// tricenter's (node/containerd writes and enables it); its state lives
	// on the machine's own directory, bound at /var/lib/containerd.
	args := []string{root, "systemctl", "disable", "apt-daily.timer",
		"apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer",
		"e2scrub_reap.service"}
	if out, err := exec.CommandContext(ctx, "chroot", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("disabling units in the root filesystem: %w: %s", err, tail(out, 500))
	}
	if out, err := exec.CommandContext(ctx, "chroot", root, "systemctl", "enable", prepUnit).CombinedOutput(); err != nil {
		return fmt.Errorf("enabling units in the root filesystem: %w: %s", err, tail(out, 500))
	}
	if out, err := exec.CommandContext(ctx, "chroot", root, "systemctl", "mask", "getty@tty1.service",
		"console-getty.service", "systemd-networkd-wait-online.service").CombinedOutput(); err != nil {
		return fmt.Errorf("masking units in the root filesystem: %w: %s", err, tail(out, 500))
	}
	return os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700)
}

// prepUnit prepares a machine for containerd and kubelet at every boot,
// before either starts (containerd.service and kubelet.service are the
// units tricenter installs).
const prepUnit = "tricenter-nspawn-prep.service"

type imageFile struct {
	data string
	mode os.FileMode
}

// imageFiles are written into the root filesystem. Each part was measured
// as required (../shared/LAB.md, "Kubernetes inside nspawn machines"):
// runc cannot create cgroups in read-only hierarchies, the bridge CNI
// plugin cannot write /proc/sys/net under --network-namespace-path, kubelet
// needs / shared, and systemd must re-probe the controllers once they are
// writable or it keeps containerd and kubelet out of their memory and pids
// cgroups.
var imageFiles = map[string]imageFile{
	"usr/local/sbin/tricenter-nspawn-prep": {mode: 0o755, data: `#!/bin/sh
# tricenter lab machine: make cgroups and /proc/sys/net writable for
# containerd and kubelet inside systemd-nspawn.
set -eu
findmnt -rn -t cgroup,cgroup2 -O ro -o TARGET | while read -r m; do
	mount -o remount,bind,rw "$m"
done
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
mount --make-rshared /
`},
	"etc/systemd/system/" + prepUnit: {mode: 0o644, data: `[Unit]
Description=tricenter lab: writable cgroups and /proc/sys/net for containerd and kubelet
DefaultDependencies=no
After=systemd-remount-fs.service
Before=sysinit.target containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tricenter-nspawn-prep
ExecStartPost=/bin/systemctl daemon-reexec

[Install]
WantedBy=sysinit.target
`},
	"etc/systemd/journald.conf.d/tricenter.conf": {mode: 0o644, data: "[Journal]\nReadKMsg=no\n"},
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
