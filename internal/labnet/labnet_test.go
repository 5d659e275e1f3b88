package labnet

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// newTestLab is a lab closed when the test ends.
func newTestLab(t *testing.T) *Lab {
	t.Helper()
	testenv.Need(t, Available())
	lab, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return lab
}

func TestBridgeAndNamespacesPing(t *testing.T) {
	lab := newTestLab(t)
	br, err := lab.Bridge(netip.MustParsePrefix("198.18.15.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lab.Namespace("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.Namespace("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Attach(br, "eth0", netip.MustParsePrefix("198.18.15.10/24")); err != nil {
		t.Fatal(err)
	}
	if err := b.Attach(br, "eth0", netip.MustParsePrefix("198.18.15.11/24")); err != nil {
		t.Fatal(err)
	}
	if err := lab.Link(a, "p2p", netip.MustParsePrefix("198.18.14.1/31"), b, "p2p", netip.MustParsePrefix("198.18.14.0/31")); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"198.18.15.11", "198.18.14.0", "198.18.15.1"} {
		out, err := a.Command(context.Background(), "ping", "-c1", "-W2", dst).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %s from a: %v\n%s", dst, err, out)
		}
		if !strings.Contains(string(out), "1 received") {
			t.Fatalf("ping %s: %s", dst, out)
		}
	}
	if _, err := lab.Bridge(netip.MustParsePrefix("10.0.0.1/24")); err == nil {
		t.Fatal("a bridge outside 198.18.0.0/15 was accepted")
	}
}

// A namespace whose bridge port is down is cut off (no answer to ping) and
// reachable again once the port is back up. (acceptance/nspawn tests that a
// TCP peer of a powered-off machine sees no reset.)
func TestSetPortUpCutsSilently(t *testing.T) {
	lab := newTestLab(t)
	br, err := lab.Bridge(netip.MustParsePrefix("198.18.13.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lab.Namespace("cut")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Attach(br, "eth0", netip.MustParsePrefix("198.18.13.10/24")); err != nil {
		t.Fatal(err)
	}
	if a.HostLink("eth0") == "" || a.HostLink("nope") != "" {
		t.Fatalf("HostLink: eth0 %q, nope %q", a.HostLink("eth0"), a.HostLink("nope"))
	}
	ping := func() error {
		return a.Command(context.Background(), "ping", "-c1", "-W1", "198.18.13.1").Run()
	}
	if err := ping(); err != nil {
		t.Fatalf("ping before the cut: %v", err)
	}
	if err := a.SetPortUp("eth0", false); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err == nil {
		t.Fatal("ping through a port that is down answered")
	}
	if err := a.SetPortUp("eth0", true); err != nil {
		t.Fatal(err)
	}
	// The port forwards again within moments (on a loaded machine one
	// 1 s ping may be too early): try for a few seconds.
	var perr error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if perr = ping(); perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("ping after the port came back (5 s): %v", perr)
	}
	if err := a.SetPortUp("nope", false); err == nil || !strings.Contains(err.Error(), "no bridge port for nope") {
		t.Fatalf("SetPortUp on an unknown link: %v", err)
	}
}

// A listener opened in one namespace and a connection dialed from another
// meet over the link between them: the connection's ends carry the two
// namespaces' addresses, which exist only there, and this process's own
// namespace is where it was before.
func TestListenAndDialInNamespaces(t *testing.T) {
	lab := newTestLab(t)
	a, err := lab.Namespace("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.Namespace("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Link(a, "p2p", netip.MustParsePrefix("198.18.12.1/31"), b, "p2p", netip.MustParsePrefix("198.18.12.0/31")); err != nil {
		t.Fatal(err)
	}
	before, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Listen("tcp", "198.18.12.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, &net.Dialer{}, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "198.18.12.1" {
		t.Errorf("dialed from %s, want a's 198.18.12.1", got)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("nothing accepted")
	}
	defer s.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := s.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q, %v", buf, err)
	}
	// The process's namespace did not change, and it cannot reach the
	// link's addresses (the link exists in a and b only).
	after, err := os.Readlink("/proc/self/ns/net")
	if err != nil || after != before {
		t.Fatalf("this thread's namespace is %s (%v), was %s", after, err, before)
	}
	if _, err := (&net.Dialer{Timeout: 300 * time.Millisecond}).Dial("tcp", l.Addr().String()); err == nil {
		t.Error("the root namespace reached b's listener: Listen did not open it in b")
	}
	if err := InNamespace("/run/netns/tc-does-not-exist", func() error { return nil }); err == nil {
		t.Error("entering a missing namespace succeeded")
	}
}

// A second bridge with a subnet the host already routes (here a leftover
// of another lab, as a killed test leaves one) is refused, naming the
// link, instead of silently sending the test's traffic to the wrong one.
func TestBridgeRefusesSubnetOnHost(t *testing.T) {
	left := newTestLab(t)
	old, err := left.Bridge(netip.MustParsePrefix("198.18.252.254/24"))
	if err != nil {
		t.Fatal(err)
	}
	lab := newTestLab(t)
	_, err = lab.Bridge(netip.MustParsePrefix("198.18.252.1/24"))
	if err == nil {
		t.Fatal("a bridge with a subnet already on the host was created")
	}
	for _, want := range []string{"198.18.252.0/24", old.Name, "ip link del " + old.Name} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if left, err := Leftovers(lab.ID()); err != nil || len(left) > 0 {
		t.Errorf("the refused bridge left %v (%v)", left, err)
	}
	// Another subnet is fine.
	if _, err := lab.Bridge(netip.MustParsePrefix("198.18.253.1/24")); err != nil {
		t.Fatal(err)
	}
}
