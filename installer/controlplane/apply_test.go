package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// This package's sshd labs use 198.18.116.0/22 (see installer/sshtest).
var block = netip.MustParsePrefix("198.18.116.0/22")

// stageRoot is where the test hosts get their files: /srv is a private
// tmpfs per sshd host, so nothing reaches this machine's /etc or
// /usr/local.
const stageRoot = "/srv/cp-root"

// fakeSystemctl is a recording fake of systemctl for the sshd test hosts
// (which share this machine's systemd, where these units must never run):
// it keeps unit state per host under /srv/fake-systemd, logs every call
// and refuses units whose file was not written.
const fakeSystemctl = `#!/bin/sh
# fake systemctl (tests only)
d=/srv/fake-systemd; mkdir -p $d
echo "$*" >> $d/calls
echo "$(date +%s.%N) $*" >> $d/timeline
cmd=$1; shift
q=; [ "$1" = -q ] && { q=1; shift; }
case "$cmd" in
is-active) rc=0; for u; do if [ -e "$d/$u.active" ]; then s=active; else s=inactive; rc=3; fi; [ -n "$q" ] || echo $s; done; exit $rc;;
is-enabled) rc=0; for u; do if [ -e "$d/$u.enabled" ]; then s=enabled; else s=disabled; rc=1; fi; [ -n "$q" ] || echo $s; done; exit $rc;;
daemon-reload|reset-failed) exit 0;;
disable) for u; do [ "$u" = --now ] || rm -f "$d/$u.enabled" "$d/$u.active"; done;;
enable|start|restart)
  for u; do
    [ -f ` + stageRoot + `/etc/systemd/system/"$u" ] || { echo "Unit $u not found." >&2; exit 5; }
    case "$cmd" in enable) touch "$d/$u.enabled";; *) touch "$d/$u.active";; esac
  done;;
*) echo "fake systemctl: unsupported $cmd" >&2; exit 1;;
esac
`

// fakeKubectl answers the ready checks once the fake units have run for
// a second since their last (re)start, and logs when it first said so.
const fakeKubectl = `#!/bin/sh
# fake kubectl (tests only)
d=/srv/fake-systemd
[ -e $d/kube-apiserver.service.active ] || { echo "connection refused" >&2; exit 1; }
newest=$(for f in $d/*.active; do date -r "$f" +%s.%N; done | sort -n | tail -1)
now=$(date +%s.%N)
awk -v a="$now" -v b="$newest" 'BEGIN { exit !(a - b >= 1) }' || { echo "not ready yet" >&2; exit 1; }
echo "$now ready" >> $d/timeline
echo ok
`

type fakeLab struct {
	lab   *sshtest.Lab
	opts  Options
	bins  string
	calls func(h *sshtest.Host) []string
}

// newFakeLab starts three sshd hosts (one control-plane server per
// center) whose root login shell puts the fake systemctl first in PATH.
func newFakeLab(t *testing.T) *fakeLab {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3})
	l.FakeCommands(t, map[string]string{"systemctl": fakeSystemctl})

	c := l.Cluster(sshtest.ClusterOptions{})
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ControlPlane) != 3 {
		t.Fatalf("placement has %d control-plane servers, want 3", len(p.ControlPlane))
	}
	store := &pki.Store{Dir: t.TempDir()}
	var members []pki.EtcdMember
	for _, m := range p.Etcd.Members {
		members = append(members, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	if _, err := store.EnsureEtcd(members); err != nil {
		t.Fatal(err)
	}
	fl := &fakeLab{lab: l, bins: t.TempDir()}
	fl.opts = Options{Cluster: c, Placement: p, IPs: ips, PKI: store, Binaries: map[string]string{},
		Root: stageRoot, ReadyTimeout: 30 * time.Second, MinFreeDisk: 1 << 20}
	for _, b := range Binaries() {
		content := "#!/bin/sh\n# fake " + b + " (tests only)\n"
		if b == Kubectl {
			content = fakeKubectl
		}
		fl.setBinary(t, b, content)
	}
	fl.calls = func(h *sshtest.Host) []string {
		b, err := os.ReadFile(h.Path("/srv/fake-systemd/calls"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return fl
}

func (fl *fakeLab) setBinary(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(fl.bins, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	fl.opts.Binaries[name] = p
}

// apply runs the control-plane phases on a fresh manager and returns the
// changes per host.
func (fl *fakeLab) apply(t *testing.T, dryRun bool) map[string][]string {
	t.Helper()
	changes, err := fl.run(t, dryRun)
	if err != nil {
		t.Fatalf("apply (dry run %v): %v", dryRun, err)
	}
	return changes
}

// run runs the control-plane phases once and returns what they changed
// and their error (a refusal, for the tests that expect one).
func (fl *fakeLab) run(t *testing.T, dryRun bool) (map[string][]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ps, err := Phases(fl.opts)
	if err != nil {
		t.Fatal(err)
	}
	m := &phase.Manager{Cluster: fl.opts.Cluster, DryRun: dryRun}
	defer m.Close()
	err = m.Run(ctx, ps...)
	return m.Changes(), err
}

// mutatingCalls are the fake systemctl calls that change something.
func mutatingCalls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if c != "" && !strings.HasPrefix(c, "is-active ") && !strings.HasPrefix(c, "is-enabled ") {
			out = append(out, c)
		}
	}
	return out
}

func TestApplyOnSSHHostsConvergesAndRestartsOnlyWhatChanged(t *testing.T) {
	fl := newFakeLab(t)
	hosts := fl.lab.Hosts

	// A dry run on fresh servers plans everything and changes nothing.
	plan := fl.apply(t, true)
	for _, h := range hosts {
		got := plan[h.Name]
		all := strings.Join(got, "\n")
		for _, want := range []string{
			"would upload " + stageRoot + "/usr/local/bin/kube-apiserver",
			"would upload " + stageRoot + "/usr/local/bin/kubectl",
			"would write " + stageRoot + "/etc/kubernetes/pki/ca.key (secret content",
			"would write " + stageRoot + "/etc/kubernetes/scheduler.conf (secret content",
			"would write " + stageRoot + "/etc/kubernetes/pki/ca.crt (",
			"would write " + stageRoot + "/etc/systemd/system/kube-apiserver.service (",
			"would reload systemd units",
			"would systemctl enable kube-scheduler.service",
			"would systemctl start kube-apiserver.service",
			"would write " + stageRoot + "/etc/kubernetes/encryption-config.yaml (secret content",
			"would write " + stageRoot + "/etc/kubernetes/audit-policy.yaml (",
			"would write " + stageRoot + "/etc/kubernetes/authentication-config.yaml (",
			"would write " + stageRoot + "/etc/kubernetes/admission-config.yaml (",
			"would run create the audit log directory /var/log/kubernetes/audit (0700, root)",
		} {
			if !strings.Contains(all, want) {
				t.Errorf("%s: dry run lacks %q:\n%s", h.Name, want, all)
			}
		}
		for _, c := range got {
			if strings.Contains(c, "secret content") && strings.Contains(c, "sha256") {
				t.Errorf("%s: a secret's digest is in the plan: %s", h.Name, c)
			}
		}
		// The dry run made the key (as it makes the CAs); the plan never
		// shows it.
		ring, err := encryption.Load(fl.opts.PKI)
		if err != nil || ring == nil {
			t.Fatalf("no keyring after the dry run: %v", err)
		}
		if strings.Contains(all, ring.Keys[0].Secret) {
			t.Errorf("%s: the encryption key is in the plan", h.Name)
		}
		if _, err := os.Stat(h.Path(stageRoot)); !os.IsNotExist(err) {
			t.Errorf("%s: the dry run wrote %s (%v)", h.Name, stageRoot, err)
		}
		if m := mutatingCalls(fl.calls(h)); len(m) > 0 {
			t.Errorf("%s: the dry run ran systemctl %v", h.Name, m)
		}
	}

	// The first apply installs and starts everything.
	first := fl.apply(t, false)
	t.Logf("first apply on %s:\n%s", hosts[0].Name, strings.Join(first[hosts[0].Name], "\n"))
	cp, err := fl.opts.PKI.EnsureControlPlane(pkiRequest(t, fl.opts))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if len(first[h.Name]) == 0 {
			t.Fatalf("%s: the first apply changed nothing", h.Name)
		}
		if got := mutatingCalls(fl.calls(h)); !slices.Equal(got, []string{"daemon-reload",
			"enable kube-apiserver.service", "start kube-apiserver.service",
			"enable kube-controller-manager.service", "start kube-controller-manager.service",
			"enable kube-scheduler.service", "start kube-scheduler.service"}) {
			t.Errorf("%s: systemctl calls %v", h.Name, got)
		}
		m, _ := fl.opts.Cluster.Host(h.Name)
		ring, err := encryption.Load(fl.opts.PKI)
		if err != nil || ring == nil {
			t.Fatalf("the keyring after apply: %v, %v", ring, err)
		}
		files, err := hostFiles(mustSettings(t, fl.opts), cp, ring, inventory.Member{Name: h.Name, Address: m.SSH.Address})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			p := h.Path(stageRoot + f.path)
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", h.Name, err)
				continue
			}
			b, _ := os.ReadFile(p)
			if st.Mode().Perm() != f.mode || !bytes.Equal(b, f.data) {
				t.Errorf("%s: %s has mode %o and %d bytes, want %o and %d", h.Name, f.path, st.Mode().Perm(), len(b), f.mode, len(f.data))
			}
		}
		// The install record: "sha256 size mtime path" per binary, in path
		// order, as the server has it.
		rec, err := os.ReadFile(h.Path(stageRoot + BinariesRecord))
		if err != nil {
			t.Fatalf("%s: no binaries record: %v", h.Name, err)
		}
		var wantRec strings.Builder
		for _, b := range Binaries() {
			p := stageRoot + BinDir + "/" + b
			st, err := os.Stat(h.Path(p))
			if err != nil {
				t.Fatal(err)
			}
			local, _ := os.ReadFile(fl.opts.Binaries[b])
			fmt.Fprintf(&wantRec, "%s %d %d %s\n", fsutil.SHA256Hex(local), st.Size(), st.ModTime().Unix(), p)
		}
		if string(rec) != wantRec.String() {
			t.Errorf("%s: binaries record\n%s\nwant\n%s", h.Name, rec, wantRec.String())
		}
		if st, err := os.Stat(h.Path(stageRoot + AuditLogDir)); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: the audit log directory: %v (mode %v), want a 0700 directory", h.Name, err, st.Mode().Perm())
		}
		unit, _ := os.ReadFile(h.Path(stageRoot + UnitDir + "/kube-apiserver.service"))
		if !strings.Contains(string(unit), "--advertise-address="+m.SSH.Address+" ") {
			t.Errorf("%s: kube-apiserver does not advertise its own address", h.Name)
		}
	}

	// Re-applying changes nothing: no upload, no write, no restart.
	before := map[string]int{}
	for _, h := range hosts {
		before[h.Name] = len(mutatingCalls(fl.calls(h)))
	}
	if again := fl.apply(t, false); len(again) != 0 {
		t.Fatalf("re-apply changed %v", again)
	}
	if plan := fl.apply(t, true); len(plan) != 0 {
		t.Fatalf("a dry run after apply plans %v", plan)
	}
	for _, h := range hosts {
		if n := len(mutatingCalls(fl.calls(h))); n != before[h.Name] {
			t.Errorf("%s: re-apply ran systemctl %v", h.Name, mutatingCalls(fl.calls(h))[before[h.Name]:])
		}
	}

	// A new scheduler binary restarts the scheduler only, on every server.
	fl.setBinary(t, Scheduler, "#!/bin/sh\n# fake kube-scheduler v2 (tests only)\n")
	changed := fl.apply(t, false)
	t.Logf("new scheduler binary on %s:\n%s", hosts[0].Name, strings.Join(changed[hosts[0].Name], "\n"))
	for _, h := range hosts {
		got := strings.Join(changed[h.Name], "\n")
		if !strings.Contains(got, "upload "+stageRoot+"/usr/local/bin/kube-scheduler") ||
			!strings.Contains(got, "restart kube-scheduler.service") || len(changed[h.Name]) != 3 {
			t.Errorf("%s: a new scheduler binary changed:\n%s\nwant its upload, the binaries record and its restart", h.Name, got)
		}
		calls := mutatingCalls(fl.calls(h))
		if got := calls[before[h.Name]:]; !slices.Equal(got, []string{"restart kube-scheduler.service"}) {
			t.Errorf("%s: systemctl calls %v, want only the scheduler's restart", h.Name, got)
		}
	}

	// One server at a time: each restart waits until the server before
	// is ready again.
	var prevReady float64
	for i, h := range hosts {
		restart, ready := timelineAfter(t, h, "restart kube-scheduler.service")
		if restart == 0 || ready == 0 {
			t.Fatalf("%s: no restart or no ready check after it in the timeline", h.Name)
		}
		if i > 0 && restart < prevReady {
			t.Errorf("%s restarted the scheduler at %.3f, before %s was ready at %.3f", h.Name, restart, hosts[i-1].Name, prevReady)
		}
		prevReady = ready
	}

	// A control-plane server more reissues the apiserver certificate
	// (new SAN): only kube-apiserver restarts.
	extra := inventory.Member{Name: "extra", Address: "198.18.116.200"}
	fl.opts.Placement.ControlPlane = append(fl.opts.Placement.ControlPlane, extra)
	if _, err := fl.opts.PKI.EnsureControlPlane(pkiRequest(t, fl.opts)); err != nil {
		t.Fatal(err)
	}
	fl.opts.Placement.ControlPlane = fl.opts.Placement.ControlPlane[:3]
	// Back to three servers: the certificate is reissued again by the run.
	changed = fl.apply(t, false)
	for _, h := range hosts {
		var restarts []string
		for _, c := range changed[h.Name] {
			if strings.HasPrefix(c, "restart ") {
				restarts = append(restarts, c)
			}
		}
		if !slices.Equal(restarts, []string{"restart kube-apiserver.service"}) {
			t.Errorf("%s: a new apiserver certificate restarted %v", h.Name, restarts)
		}
		if got := strings.Join(changed[h.Name], "\n"); !strings.Contains(got, "apiserver.key (secret content") {
			t.Errorf("%s: changes %s", h.Name, got)
		}
	}
}

// TestEncryptionKeysAgainstTheServers: the keyring the first apply made
// is kept by later runs; a state that lost it takes the servers' back
// instead of making a new key (which would leave every encrypted Secret
// unreadable); a state whose key differs from the servers' is refused
// before anything is written; a drifted audit log directory is put back
// to 0700.
func TestEncryptionKeysAgainstTheServers(t *testing.T) {
	fl := newFakeLab(t)
	fl.apply(t, false)
	ring, err := encryption.Load(fl.opts.PKI)
	if err != nil || ring == nil {
		t.Fatalf("keyring after the first apply: %v, %v", ring, err)
	}
	confs := map[string][]byte{}
	for _, h := range fl.lab.Hosts {
		b, err := os.ReadFile(h.Path(stageRoot + EncryptionConfig))
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(h.Path(stageRoot + EncryptionConfig)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %s has mode %o", h.Name, EncryptionConfig, st.Mode().Perm())
		}
		if !strings.Contains(string(b), ring.Keys[0].Secret) {
			t.Fatalf("%s: the encryption configuration does not hold the state's key", h.Name)
		}
		confs[h.Name] = b
	}

	// The state lost its keyring: the next apply adopts the servers' and
	// changes nothing on them.
	if err := os.Remove(filepath.Join(fl.opts.PKI.Dir, encryption.StoreDir, encryption.KeyringFile)); err != nil {
		t.Fatal(err)
	}
	if again := fl.apply(t, false); len(again) != 0 {
		t.Fatalf("the apply after the state lost its keyring changed %v", again)
	}
	back, err := encryption.Load(fl.opts.PKI)
	if err != nil || back == nil || back.Keys[0].Secret != ring.Keys[0].Secret || back.Keys[0].Name != ring.Keys[0].Name {
		t.Fatalf("the state did not take the servers' key back: %v, %v", back, err)
	}

	// A state with another key-1 is refused, naming the servers, before
	// anything is written; the servers keep their key.
	other, err := encryption.NewKey("key-1", encryption.Secretbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := encryption.Save(fl.opts.PKI, &encryption.Keyring{Keys: []encryption.Key{other}}); err != nil {
		t.Fatal(err)
	}
	_, err = fl.run(t, false)
	if !errors.Is(err, encryption.ErrKeyMismatch) || !strings.Contains(err.Error(), fl.lab.Hosts[0].Name+" holds key-1 (secretbox)") {
		t.Fatalf("apply with another key: %v, want ErrKeyMismatch naming the servers", err)
	}
	if strings.Contains(err.Error(), other.Secret) || strings.Contains(err.Error(), ring.Keys[0].Secret) {
		t.Fatal("the error quotes a key")
	}
	for _, h := range fl.lab.Hosts {
		if b, _ := os.ReadFile(h.Path(stageRoot + EncryptionConfig)); !bytes.Equal(b, confs[h.Name]) {
			t.Errorf("%s: the refused apply rewrote %s", h.Name, EncryptionConfig)
		}
	}

	// Back to the right key; a drifted audit directory mode is repaired
	// without restarting anything.
	if err := encryption.Save(fl.opts.PKI, ring); err != nil {
		t.Fatal(err)
	}
	h := fl.lab.Hosts[0]
	if err := os.Chmod(h.Path(stageRoot+AuditLogDir), 0o755); err != nil {
		t.Fatal(err)
	}
	changed := fl.apply(t, false)
	if got := changed[h.Name]; len(got) != 1 || !strings.Contains(got[0], "create the audit log directory") || len(changed) != 1 {
		t.Fatalf("repairing the audit directory changed %v", changed)
	}
	if st, _ := os.Stat(h.Path(stageRoot + AuditLogDir)); st.Mode().Perm() != 0o700 {
		t.Errorf("the audit directory has mode %o after the apply", st.Mode().Perm())
	}
}

func pkiRequest(t *testing.T, o Options) pki.ControlPlaneRequest {
	t.Helper()
	req := pki.ControlPlaneRequest{APIVIP: o.IPs.APIVIP, ServiceIP: o.IPs.KubernetesServiceIP,
		ClusterDomain: o.Cluster.Spec.Network.ClusterDomain}
	for _, m := range o.Placement.ControlPlane {
		req.Servers = append(req.Servers, pki.ControlPlaneServer{Name: m.Name, Address: m.Address})
	}
	return req
}

func mustSettings(t *testing.T, o Options) Settings {
	t.Helper()
	s, err := settingsFor(o.Cluster, o.Placement)
	if err != nil {
		t.Fatal(fmt.Errorf("settings: %w", err))
	}
	return s
}

func TestRemoveOnSSHHosts(t *testing.T) {
	fl := newFakeLab(t)
	fl.apply(t, false)
	// A file of the node agents under /etc/kubernetes stays.
	other := stageRoot + "/etc/kubernetes/kubelet/kubelet.conf"
	for _, h := range fl.lab.Hosts {
		writeFile(t, h.Path(other), []byte("not ours\n"), 0o600)
	}
	remove := func(dryRun bool) map[string][]string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m := &phase.Manager{Cluster: fl.opts.Cluster, DryRun: dryRun}
		defer m.Close()
		if err := m.Run(ctx, removePhase(fl.selector(), stageRoot)); err != nil {
			t.Fatalf("remove (dry run %v): %v", dryRun, err)
		}
		return m.Changes()
	}
	plan := remove(true)
	for _, h := range fl.lab.Hosts {
		if len(plan[h.Name]) != 1 || !strings.HasPrefix(plan[h.Name][0], "would run stop and remove kube-apiserver") {
			t.Errorf("%s: remove plans %v", h.Name, plan[h.Name])
		}
		if _, err := os.Stat(h.Path(stageRoot + SchedulerConf)); err != nil {
			t.Errorf("%s: the dry run removed files: %v", h.Name, err)
		}
	}
	done := remove(false)
	for _, h := range fl.lab.Hosts {
		if len(done[h.Name]) != 1 {
			t.Errorf("%s: remove changed %v", h.Name, done[h.Name])
		}
		for _, p := range append(managedFiles(), BinDir+"/"+Kubectl, BinariesRecord, PKIDir) {
			if _, err := os.Stat(h.Path(stageRoot + p)); !os.IsNotExist(err) {
				t.Errorf("%s: %s is left (%v)", h.Name, p, err)
			}
		}
		if _, err := os.Stat(h.Path(other)); err != nil {
			t.Errorf("%s: remove took the node agents' file: %v", h.Name, err)
		}
		for _, c := range Components() {
			if _, err := os.Stat(h.Path("/srv/fake-systemd/" + UnitName(c) + ".active")); !os.IsNotExist(err) {
				t.Errorf("%s: %s still runs", h.Name, c)
			}
		}
	}
	if again := remove(false); len(again) != 0 {
		t.Fatalf("removing again changed %v", again)
	}
}

func (fl *fakeLab) selector() inventory.Selector {
	var names []string
	for _, m := range fl.opts.Placement.ControlPlane {
		names = append(names, m.Name)
	}
	return inventory.Selector{Servers: names}
}

// timelineAfter returns when the fake systemctl last ran call on h and
// when the fake kubectl first reported ready after that (Unix seconds).
func timelineAfter(t *testing.T, h *sshtest.Host, call string) (at, ready float64) {
	t.Helper()
	b, err := os.ReadFile(h.Path("/srv/fake-systemd/timeline"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		ts, what, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		var x float64
		if _, err := fmt.Sscan(ts, &x); err != nil {
			t.Fatalf("timeline line %q: %v", l, err)
		}
		switch {
		case what == call:
			at, ready = x, 0
		case what == "ready" && at > 0 && ready == 0:
			ready = x
		}
	}
	return at, ready
}

// TestConfigMapEncryptionFromInventory: spec.kubernetes.encryption.configMaps
// puts ConfigMaps in every server's EncryptionConfiguration next to
// Secrets; turning it off again is refused before anything is written.
func TestConfigMapEncryptionFromInventory(t *testing.T) {
	fl := newFakeLab(t)
	fl.opts.Cluster.Spec.Kubernetes.Encryption.ConfigMaps = true
	fl.apply(t, false)
	confs := map[string][]byte{}
	for _, h := range fl.lab.Hosts {
		b, err := os.ReadFile(h.Path(stageRoot + EncryptionConfig))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "- secrets") || !strings.Contains(string(b), "- configmaps") {
			t.Fatalf("%s: %s does not encrypt Secrets and ConfigMaps:\n%s", h.Name, EncryptionConfig, b)
		}
		confs[h.Name] = b
	}

	fl.opts.Cluster.Spec.Kubernetes.Encryption.ConfigMaps = false
	_, err := fl.run(t, false)
	if err == nil || !strings.Contains(err.Error(), "encrypts ConfigMaps") || !strings.Contains(err.Error(), fl.lab.Hosts[0].Name) {
		t.Fatalf("turning ConfigMap encryption off: %v, want a refusal naming the servers", err)
	}
	for _, h := range fl.lab.Hosts {
		if b, _ := os.ReadFile(h.Path(stageRoot + EncryptionConfig)); !bytes.Equal(b, confs[h.Name]) {
			t.Errorf("%s: the refused apply rewrote %s", h.Name, EncryptionConfig)
		}
	}
}
