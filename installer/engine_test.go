package installer

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The engine's sshd labs use 198.18.112.0/22 (see installer/sshtest).
var block = netip.MustParsePrefix("198.18.112.0/22")

func TestParseComponents(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []Component
		err  string
	}{
		{nil, Components(), ""},
		{[]string{"addons,etcd"}, []Component{Etcd, Addons}, ""},
		{[]string{"nodes", "control-plane"}, []Component{ControlPlane, Nodes}, ""},
		{[]string{"kubelet"}, nil, `unknown component "kubelet"`},
	} {
		got, err := ParseComponents(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestDialThroughJumpHost: the servers' network is not routable from the
// test process; the engine's dialer reaches a server's port through the
// center's jump host (a direct-tcpip channel over SSH).
func TestDialThroughJumpHost(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	c := l.Cluster(sshtest.ClusterOptions{})
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	target := net.JoinHostPort(l.Hosts[0].Addr.String(), "22")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l.Hosts[0].RequireUnreachable(t)

	conn, err := e.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatalf("dial through the jump host: %v", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	banner, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the server's banner: %v", err)
	}
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("banner %q: not the target's sshd", banner)
	}
	// A non-server address (a VIP) is tried through every center's hop.
	d := e.dialer(e.net)
	hops := d.hops(netip.MustParseAddr("198.18.113.250"))
	if len(hops) == 0 || hops[0] == nil {
		t.Fatalf("a VIP is dialled directly, want through the jump host: %v", hops)
	}
}

// A relative artifactDir (as in the lab inventory) reaches the phases as
// an absolute path.
func TestArtifactsAbsolute(t *testing.T) {
	c := &inventory.Cluster{}
	c.Spec.Kubernetes.ArtifactDir = ".cache/artifacts"
	st, err := state.Open(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{cfg: Config{Cluster: c, Store: st}, log: slog.New(slog.DiscardHandler)}
	s := e.Artifacts()
	if !filepath.IsAbs(s.Dir) || !strings.HasSuffix(s.Dir, "/.cache/artifacts") {
		t.Fatalf("artifact dir %q", s.Dir)
	}
}
