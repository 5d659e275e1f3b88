// Package sshtest starts real OpenSSH servers as separate hosts for
// integration tests and benchmarks: each host is a network namespace
// (internal/labnet) with its own sshd (Debian openssh-server), host key,
// private mounts (/srv, /home, /var/tmp, /etc/systemd/system are per-host
// tmpfs) and users (root, "deploy" with passwordless sudo, "pwuser" whose
// sudo wants a password).
//
// With Options.Jump the targets sit on a bridge the calling process has no
// address on: the jump host is the only way to reach them, so ProxyJump is
// really exercised.
//
// Hosts are spread over three centers, round robin (node01 in dc1, node02
// in dc2, …); center k's hosts sit in the k-th /26 of their segment, which
// is also their rack's subnet in Lab.Cluster.
//
// Addresses: each lab takes a /22 inside the installer's block
// 198.18.16.0/20; its first /24 is the reachable segment (the root
// namespace is .1, the jump host .2, direct hosts from .10), its second /24
// the segment behind the jump host (jump host .1, targets from .10).
// Packages that run at the same time use different /22s:
//
//	198.18.16.0/22  installer/ssh
//	198.18.20.0/22  installer/phase
//	198.18.24.0/22  cmd/tricenter
//	198.18.28.0/22  bench/installer
//
// and inside 198.18.112.0/20: the engine (installer) 112, controlplane
// 116, the etcd drill 120, sshtest's own tests 124.
package sshtest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// installerBlocks hold the labs' /22s: 198.18.16.0/20 (ssh, phase, CLI,
// bench) and 198.18.112.0/20 (the engine 112, controlplane 116, etcd drill
// 120, sshtest 124).
var installerBlocks = []netip.Prefix{netip.MustParsePrefix("198.18.16.0/20"), netip.MustParsePrefix("198.18.112.0/20")}

func inInstallerBlocks(p netip.Prefix) bool {
	for _, b := range installerBlocks {
		if b.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// Options shape a lab.
type Options struct {
	// Block is a /22 inside 198.18.16.0/20.
	Block netip.Prefix
	// Hosts is the number of target hosts.
	Hosts int
	// Jump puts the targets behind a jump host.
	Jump bool
	// CA gives every host an SSH host certificate signed by the lab CA.
	CA bool
	// TmpfsSize bounds each per-host tmpfs (default "256m").
	TmpfsSize string
	// ExtraAuthorizedKeys are accepted for every user besides the lab key.
	ExtraAuthorizedKeys []xssh.PublicKey
}

// Host is one sshd.
type Host struct {
	Name        string
	Addr        netip.Addr
	Extra       []netip.Addr // further addresses (the jump host has one per center)
	HostKey     xssh.PublicKey
	Fingerprint string // SHA256:…
	NS          *labnet.NS

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

// Pid is the sshd listener's process id.
func (h *Host) Pid() int { return h.cmd.Process.Pid }

// Path maps a path as the host sees it (its private mounts included) to a
// path the calling process can read: /proc/PID/root/PATH.
func (h *Host) Path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", h.Pid(), p)
}

// Log is what sshd wrote to stderr so far.
func (h *Host) Log() string { return h.log.String() }

// RequireUnreachable fails the test when the calling process reaches h's
// sshd directly: a test of the way in through a jump host or a bastion
// would prove nothing.
func (h *Host) RequireUnreachable(t testing.TB) {
	t.Helper()
	target := net.JoinHostPort(h.Addr.String(), "22")
	if conn, err := net.DialTimeout("tcp", target, time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s (%s) is reachable directly: the test proves nothing", h.Name, target)
	}
}

// Lab is a set of sshd hosts.
type Lab struct {
	Dir        string // key files, configs, known_hosts
	ClientKey  string // private key file (ed25519) authorized for every user
	KnownHosts string // known_hosts with every host's plain key
	// CAKnownHosts holds only an @cert-authority line for the lab CA.
	CAKnownHosts string
	CA           xssh.Signer // nil without Options.CA
	Jump         *Host       // nil without Options.Jump
	Hosts        []*Host
	// Gateway is the root namespace's address on the reachable segment.
	Gateway netip.Addr
	// JumpInner is the jump host's address on the targets' segment: the
	// only source address the targets should ever see.
	JumpInner netip.Addr

	net     *labnet.Lab
	unreach string
	mu      sync.Mutex
	procs   []*Host
}

// Available reports why a lab cannot run here, or nil.
func Available() error {
	if err := labnet.Available(); err != nil {
		return err
	}
	for _, b := range []string{"/usr/sbin/sshd", "/usr/lib/openssh/sftp-server", "/usr/bin/sudo"} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing: run make deps (Debian openssh-server, openssh-sftp-server, sudo)", b)
		}
	}
	return nil
}

// Start brings up the lab; t.Cleanup-style callers use New.
func Start(ctx context.Context, o Options) (_ *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if !o.Block.IsValid() || o.Block.Bits() != 22 || !inInstallerBlocks(o.Block) || o.Block.Masked() != o.Block {
		return nil, fmt.Errorf("sshtest: Block %s must be a /22 inside %v", o.Block, installerBlocks)
	}
	if o.Hosts < 1 || o.Hosts > 150 {
		return nil, fmt.Errorf("sshtest: Hosts %d must be between 1 and 150", o.Hosts)
	}
	if o.TmpfsSize == "" {
		o.TmpfsSize = "256m"
	}
	dir, err := os.MkdirTemp("", "tricenter-sshlab-")
	if err != nil {
		return nil, err
	}
	// sshd reads authorized_keys as the login user: the directory must be
	// traversable by everyone.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	n, err := labnet.New()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	l := &Lab{Dir: dir, net: n}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	if err := l.writeCommon(o); err != nil {
		return nil, err
	}

	base := o.Block.Addr().As4()
	pub := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 0})
	priv := netip.AddrFrom4([4]byte{base[0], base[1], base[2] + 1, 0})
	at := func(a netip.Addr, host byte) netip.Addr { b := a.As4(); b[3] = host; return netip.AddrFrom4(b) }
	l.Gateway = at(pub, 1)
	pubBr, err := n.Bridge(netip.PrefixFrom(l.Gateway, 24))
	if err != nil {
		return nil, err
	}
	targetBr, targetNet := pubBr, pub
	if o.Jump {
		privBr, err := n.Bridge(netip.Prefix{})
		if err != nil {
			return nil, err
		}
		ns, err := n.Namespace("jump")
		if err != nil {
			return nil, err
		}
		if err := ns.Attach(pubBr, "eth0", netip.PrefixFrom(at(pub, 2), 24)); err != nil {
			return nil, err
		}
		if err := ns.Attach(privBr, "eth1", netip.PrefixFrom(at(priv, 1), 24)); err != nil {
			return nil, err
		}
		l.JumpInner = at(priv, 1)
		// One address per center, so each center's jump host entry in the
		// inventory has its own (the validator wants distinct addresses).
		for _, extra := range []byte{3, 4} {
			if err := ns.IP("addr", "add", netip.PrefixFrom(at(pub, extra), 24).String(), "dev", "eth0"); err != nil {
				return nil, err
			}
		}
		l.Jump, err = l.newHost(o, "jump", at(pub, 2), ns, at(pub, 3), at(pub, 4))
		if err != nil {
			return nil, err
		}
		targetBr, targetNet = privBr, priv
		// The root namespace must not reach the targets by any path (not
		// even the machine's default route): an unreachable route for the
		// segment makes a direct dial fail at once.
		seg := netip.PrefixFrom(priv, 24).String()
		if out, err := exec.Command("ip", "route", "add", "unreachable", seg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip route add unreachable %s: %w: %s", seg, err, out)
		}
		l.unreach = seg
	}
	for i := range o.Hosts {
		ns, err := n.Namespace("h")
		if err != nil {
			return nil, err
		}
		a := at(targetNet, byte(CenterOf(i)*64+10+i/3))
		if err := ns.Attach(targetBr, "eth0", netip.PrefixFrom(a, 24)); err != nil {
			return nil, err
		}
		h, err := l.newHost(o, fmt.Sprintf("node%02d", i+1), a, ns)
		if err != nil {
			return nil, err
		}
		l.Hosts = append(l.Hosts, h)
	}
	if err := l.writeKnownHosts(); err != nil {
		return nil, err
	}
	all := l.Hosts
	if l.Jump != nil {
		all = append([]*Host{l.Jump}, all...)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, h := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.startHost(ctx, h, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// New starts a lab for a test and stops it in t.Cleanup. When the machine
// cannot run one the test is skipped with the reason, or fails under
// CI=true (internal/testenv).
func New(t testing.TB, o Options) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		testenv.Need(t, fmt.Errorf("real sshd hosts need root, iproute2 and openssh-server: %w", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("starting sshd lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.procs {
				if s := h.Log(); s != "" {
					t.Logf("sshd %s log:\n%s", h.Name, s)
				}
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("stopping sshd lab: %v", err)
		}
	})
	return l
}

// Close kills every sshd (and its sessions) by process group, then removes
// the namespaces, bridges and files.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, h := range procs {
		h.Kill()
	}
	var errs []error
	if l.unreach != "" {
		if out, err := exec.Command("ip", "route", "del", "unreachable", l.unreach).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip route del unreachable %s: %w: %s", l.unreach, err, out))
		}
	}
	if l.net != nil {
		errs = append(errs, l.net.Close())
	}
	errs = append(errs, os.RemoveAll(l.Dir))
	return errors.Join(errs...)
}

// Kill stops the host's sshd and every session it forked.
func (h *Host) Kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
	}
}

func genKey() (ed25519.PrivateKey, xssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p, err := xssh.NewPublicKey(pub)
	return priv, p, err
}

func writePrivate(path string, k ed25519.PrivateKey) error {
	b, err := xssh.MarshalPrivateKey(k, "")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(b), 0o600)
}

// GenerateKey writes a new ed25519 private key (and PATH.pub) and returns
// its public key.
func GenerateKey(path string, passphrase string) (xssh.PublicKey, error) {
	priv, pub, err := genKey()
	if err != nil {
		return nil, err
	}
	var b *pem.Block
	if passphrase != "" {
		b, err = xssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	} else {
		b, err = xssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
		return nil, err
	}
	return pub, os.WriteFile(path+".pub", xssh.MarshalAuthorizedKey(pub), 0o644)
}

func (l *Lab) writeCommon(o Options) error {
	l.ClientKey = filepath.Join(l.Dir, "id_ed25519")
	pub, err := GenerateKey(l.ClientKey, "")
	if err != nil {
		return err
	}
	var ak []byte
	ak = append(ak, xssh.MarshalAuthorizedKey(pub)...)
	for _, k := range o.ExtraAuthorizedKeys {
		ak = append(ak, xssh.MarshalAuthorizedKey(k)...)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "authorized_keys"), ak, 0o644); err != nil {
		return err
	}
	if o.CA {
		priv, _, err := genKey()
		if err != nil {
			return err
		}
		if l.CA, err = xssh.NewSignerFromKey(priv); err != nil {
			return err
		}
	}
	// Users: the machine's own plus two test logins. The files are bind
	// mounted over /etc inside each host only.
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return err
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		return err
	}
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return err
	}
	passwd = append(passwd, "deploy:x:1990:1990:tricenter test:/home/deploy:/bin/sh\npwuser:x:1991:1991:tricenter test:/home/pwuser:/bin/sh\n"...)
	group = append(group, "deploy:x:1990:\npwuser:x:1991:\n"...)
	shadow = append(shadow, "deploy:*:19000:0:99999:7:::\npwuser:*:19000:0:99999:7:::\n"...)
	for name, b := range map[string][]byte{"passwd": passwd, "group": group} {
		if err := os.WriteFile(filepath.Join(l.Dir, name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "shadow"), shadow, 0o640); err != nil {
		return err
	}
	sd := filepath.Join(l.Dir, "sudoers.d")
	if err := os.Mkdir(sd, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(sd, "tricenter-test"),
		[]byte("deploy ALL=(ALL) NOPASSWD: ALL\npwuser ALL=(ALL) ALL\n"), 0o440)
}

func (l *Lab) newHost(o Options, name string, addr netip.Addr, ns *labnet.NS, extra ...netip.Addr) (*Host, error) {
	dir := filepath.Join(l.Dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	priv, pub, err := genKey()
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := writePrivate(keyFile, priv); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile+".pub", xssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		return nil, err
	}
	cfg := []string{
		"ListenAddress " + addr.String() + ":22",
		"HostKey " + keyFile,
		"PidFile none",
		"AuthorizedKeysFile " + filepath.Join(l.Dir, "authorized_keys"),
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"Subsystem sftp /usr/lib/openssh/sftp-server",
		"MaxSessions 64",
		"MaxStartups 200",
		"UseDNS no",
		"PrintMotd no",
		"LogLevel INFO",
	}
	for _, a := range extra {
		cfg = append(cfg, "ListenAddress "+a.String()+":22")
	}
	if l.CA != nil {
		cert := &xssh.Certificate{
			Key: pub, CertType: xssh.HostCert, KeyId: name,
			ValidPrincipals: append([]string{addr.String(), name}, addrStrings(extra)...),
			ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
			ValidBefore:     uint64(time.Now().Add(24 * time.Hour).Unix()),
		}
		if err := cert.SignCert(rand.Reader, l.CA); err != nil {
			return nil, err
		}
		certFile := keyFile + "-cert.pub"
		if err := os.WriteFile(certFile, xssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			return nil, err
		}
		cfg = append(cfg, "HostCertificate "+certFile)
	}
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	return &Host{Name: name, Addr: addr, Extra: extra, HostKey: pub, Fingerprint: xssh.FingerprintSHA256(pub), NS: ns, dir: dir,
		done: make(chan struct{}), log: &syncBuffer{}}, nil
}

func (l *Lab) writeKnownHosts() error {
	var b strings.Builder
	all := l.Hosts
	if l.Jump != nil {
		all = append([]*Host{l.Jump}, all...)
	}
	for _, h := range all {
		for _, a := range append([]netip.Addr{h.Addr}, h.Extra...) {
			fmt.Fprintf(&b, "%s %s", a, xssh.MarshalAuthorizedKey(h.HostKey))
		}
	}
	l.KnownHosts = filepath.Join(l.Dir, "known_hosts")
	if err := os.WriteFile(l.KnownHosts, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if l.CA != nil {
		l.CAKnownHosts = filepath.Join(l.Dir, "known_hosts_ca")
		line := "@cert-authority 198.18.* " + string(xssh.MarshalAuthorizedKey(l.CA.PublicKey()))
		if err := os.WriteFile(l.CAKnownHosts, []byte(line), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startScript runs inside the host's namespace (ip netns exec gives it a
// private mount namespace): per-host tmpfs mounts and users, then sshd.
func (l *Lab) startScript(h *Host, o Options) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, m := range []string{"/srv", "/home", "/var/tmp", "/etc/systemd/system"} {
		fmt.Fprintf(&b, "mount -t tmpfs -o size=%s,mode=0755 tricenter-lab %s\n", o.TmpfsSize, m)
	}
	b.WriteString("chmod 1777 /var/tmp\n")
	b.WriteString("mkdir -p /home/deploy /home/pwuser && chown 1990:1990 /home/deploy && chown 1991:1991 /home/pwuser\n")
	for _, f := range []string{"passwd", "group", "shadow"} {
		fmt.Fprintf(&b, "mount --bind %s /etc/%s\n", shell.Quote(filepath.Join(l.Dir, f)), f)
	}
	fmt.Fprintf(&b, "mount --bind %s /etc/sudoers.d\n", shell.Quote(filepath.Join(l.Dir, "sudoers.d")))
	fmt.Fprintf(&b, "exec /usr/sbin/sshd -D -e -f %s\n", shell.Quote(filepath.Join(h.dir, "sshd_config")))
	return b.String()
}

func (l *Lab) startHost(ctx context.Context, h *Host, o Options) error {
	cmd := exec.Command("ip", "netns", "exec", h.NS.Name, "sh", "-c", l.startScript(h, o))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting sshd %s: %w", h.Name, err)
	}
	h.cmd = cmd
	l.mu.Lock()
	l.procs = append(l.procs, h)
	l.mu.Unlock()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			h.log.WriteString(line + "\n")
			if strings.Contains(line, "Server listening on "+h.Addr.String()+" ") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(h.done)
	}()
	select {
	case <-ready:
		return nil
	case <-h.done:
		return fmt.Errorf("sshd %s exited at start: %s", h.Name, strings.TrimSpace(h.log.String()))
	case <-ctx.Done():
		return fmt.Errorf("sshd %s did not start listening: %w: %s", h.Name, ctx.Err(), h.log.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) WriteString(x string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() < 1<<20 {
		s.b.WriteString(x)
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
