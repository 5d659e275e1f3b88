package labnet

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

func TestBridgeAndNamespacesPing(t *testing.T) {
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
