package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// fleetInventory describes the BMCs as an inventory: five racks over three
// centers, ten servers each, plus extra servers whose BMC entries are
// broken in the ways listed in extra. It must pass validation.
func fleetInventory(t *testing.T, bmcs []*ipmisim.BMC, extra string) *inventory.Cluster {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`apiVersion: tricenter.io/v1alpha1
kind: Cluster
metadata: {name: fleet}
spec:
  sites: [{name: a}, {name: b}]
  centers:
    - {name: dc1, site: a, role: production}
    - {name: dc2, site: a, role: local-dr}
    - {name: dc3, site: b, role: remote-dr}
  ssh: {keyFile: /dev/null}
  network: {podCIDR: 198.19.128.0/17, serviceCIDR: 198.19.64.0/18, loadBalancerPool: [198.19.32.0/24]}
  racks:
`)
	centers := []string{"dc1", "dc1", "dc2", "dc2", "dc3"}
	for r := 0; r < 5; r++ {
		fmt.Fprintf(&b, "    - name: rack%d\n      center: %s\n      subnet: 198.18.%d.0/24\n      tor: {name: tor%d, asn: %d, address: 198.18.%d.1}\n      servers:\n",
			r, centers[r], 200+r, r, 65100+r, 200+r)
		for s := 0; s < 10; s++ {
			i := r*10 + s
			if i >= len(bmcs) {
				break
			}
			role := "worker"
			if s == 0 {
				role = "etcd"
			}
			pwFile := filepath.Join(dir, bmcs[i].Name()+".pw")
			if err := os.WriteFile(pwFile, []byte("pw-"+bmcs[i].Name()+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "        - name: %s\n          roles: [%s]\n          ssh: {address: 198.18.%d.%d}\n"+
				"          bmc: {address: %s, user: admin, password: {file: %s}}\n",
				bmcs[i].Name(), role, 200+r, 10+s, bmcs[i].Address(), pwFile)
		}
	}
	b.WriteString(extra)
	c, lines, err := inventory.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	// The BMCs are described as any inventory must describe them: the
	// lab addresses pass validation.
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatalf("%v\n--- inventory:\n%s", err, b.String())
	}
	return c
}

// TestFleet50 runs every fleet operation over 50 ipmi_sim BMCs described
// in an inventory, selected by center, rack, role and name, and checks the
// per-server results against each BMC's hook log.
func TestFleet50(t *testing.T) {
	idxs := make([]int, 50)
	for i := range idxs {
		idxs[i] = i
	}
	bmcs := startSims(t, idxs, nil)
	// wrong-pw: a BMC of its own (one BMC endpoint per server), asked
	// with the wrong password.
	wrongPW := startSim(t, 50, nil)
	// ghost: a configured address where no BMC listens; no-secret's BMC
	// is never contacted (its password cannot be resolved).
	extra := labAddrs(t, 232, 235)
	ghost, noSecret := extra[0], extra[1]
	t.Setenv("TRICENTER_TEST_WRONG_PW", "wrong")
	c := fleetInventory(t, bmcs, fmt.Sprintf(`    - name: broken
      center: dc3
      subnet: 198.18.210.0/24
      tor: {name: torx, asn: 65110, address: 198.18.210.1}
      servers:
        - {name: wrong-pw, roles: [worker], ssh: {address: 198.18.210.10}, bmc: {address: %s, user: admin, password: {env: TRICENTER_TEST_WRONG_PW}}}
        - {name: ghost, roles: [worker], ssh: {address: 198.18.210.11}, bmc: {address: %s, user: admin, password: {env: TRICENTER_TEST_WRONG_PW}}}
        - {name: no-bmc, roles: [worker], ssh: {address: 198.18.210.12}}
        - {name: no-secret, roles: [worker], ssh: {address: 198.18.210.13}, bmc: {address: %s, user: admin, password: {env: TRICENTER_TEST_UNSET}}}
`, wrongPW.Address(), ghost, noSecret))
	opts := fastOptions(nil)
	opts.Concurrency = 16
	pool := NewPool(opts)
	t.Cleanup(func() { _ = pool.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	fleet, err := c.Select(inventory.Selector{Racks: []string{"rack0", "rack1", "rack2", "rack3", "rack4"}})
	if err != nil || len(fleet) != 50 {
		t.Fatalf("select: %d hosts, %v", len(fleet), err)
	}
	start := time.Now()
	res := pool.RunHosts(ctx, fleet, Request{Op: OpOn, Wait: 10 * time.Second})
	t.Logf("power on + wait of 50 BMCs: %s", time.Since(start))
	if err := Errors(res); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Server != bmcs[i].Name() || r.Power != PowerOn || r.Change == nil || r.Change.Sent != ActionOn || r.CipherSuite != 3 {
			t.Errorf("result %d: %+v", i, r)
		}
		if ev := setEvents(t, bmcs[i]); !contains(ev, "set power 1") {
			t.Errorf("%s: hook saw %q", bmcs[i].Name(), ev)
		}
	}

	// By center: dc2 holds racks 2 and 3.
	dc2, err := c.Select(inventory.Selector{Centers: []string{"dc2"}})
	if err != nil {
		t.Fatal(err)
	}
	res = pool.RunHosts(ctx, dc2, Request{Op: OpPXE, UEFI: true})
	if err := Errors(res); err != nil || len(res) != 20 {
		t.Fatalf("pxe on dc2: %d results, %v", len(res), err)
	}
	for i, b := range bmcs {
		dev, _ := b.BootDevice()
		if want := map[bool]string{true: "pxe", false: ""}[i >= 20 && i < 40]; dev != want {
			t.Errorf("%s: boot device %q, want %q", b.Name(), dev, want)
		}
	}

	// By role: the etcd servers are the first of each rack.
	etcd, err := c.Select(inventory.Selector{Roles: []inventory.Role{inventory.RoleEtcd}})
	if err != nil {
		t.Fatal(err)
	}
	res = pool.RunHosts(ctx, etcd, Request{Op: OpInventory})
	if err := Errors(res); err != nil || len(res) != 5 {
		t.Fatalf("inventory of etcd servers: %d results, %v", len(res), err)
	}
	for _, r := range res {
		if r.Inventory == nil || r.Inventory.Facts.Serial != "SN-"+r.Server || len(r.Inventory.Sensors) != 7 {
			t.Errorf("%s: inventory %+v", r.Server, r.Inventory)
		}
	}
	facts := FactsByServer(res)
	if len(facts) != 5 || facts["srv010"].Model != "TL-1000 Server" || facts["srv010"].Labels()[LabelSerial] != "SN-srv010" {
		t.Errorf("facts %+v", facts)
	}

	// Status of everything, sessions reused from the runs above.
	all := c.Hosts()
	res = pool.RunHosts(ctx, all, Request{Op: OpStatus})
	if len(res) != 54 {
		t.Fatalf("%d results", len(res))
	}
	byName := map[string]Result{}
	for _, r := range res {
		byName[r.Server] = r
	}
	for _, b := range bmcs {
		if r := byName[b.Name()]; r.Err != nil || r.Power != PowerOn {
			t.Errorf("%s: %+v", b.Name(), r)
		}
	}
	joined := Errors(res)
	for name, want := range map[string]error{"wrong-pw": ErrAuth, "ghost": ErrUnreachable, "no-bmc": ErrConfig, "no-secret": ErrConfig} {
		r := byName[name]
		if !errors.Is(r.Err, want) || !strings.Contains(r.Error, name) {
			t.Errorf("%s: %v, want %v naming the server", name, r.Err, want)
		}
	}
	if !errors.Is(joined, ErrAuth) || !errors.Is(joined, ErrUnreachable) {
		t.Errorf("joined errors lost their types: %v", joined)
	}
	if strings.Contains(joined.Error(), "pw-srv") || strings.Contains(joined.Error(), "wrong\n") {
		t.Error("a password leaked into the errors")
	}

	// By name, then off.
	one, err := c.Select(inventory.Selector{Servers: []string{bmcs[7].Name()}})
	if err != nil {
		t.Fatal(err)
	}
	res = pool.RunHosts(ctx, one, Request{Op: OpOff, Wait: 5 * time.Second})
	if err := Errors(res); err != nil || res[0].Power != PowerOff {
		t.Fatalf("off: %+v", res)
	}
	if on, _ := bmcs[7].PoweredOn(); on {
		t.Error("machine still on")
	}
}

// TestFleetCancel: cancelling the context ends a fleet run at once with a
// result per server saying so, both for the commands in flight and for
// those still waiting for a slot. The BMCs are UDP sockets that read every
// datagram and never answer, with an exchange timeout far longer than the
// test's bound, so only the cancellation can end the commands in flight.
func TestFleetCancel(t *testing.T) {
	ghost := labAddrs(t, 233)[0]
	const n = 5
	heard := make(chan int, 64) // the port of every datagram the mute BMCs read
	var ts []Target
	for i := 0; i < n; i++ {
		port := 700 + i
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ghost.String(), strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				select {
				case heard <- port:
				default:
				}
			}
		}()
		ts = append(ts, Target{Server: fmt.Sprintf("s%d", i), Address: ghost.String(), Port: port, User: "u", Password: "p", CipherSuites: []int{3}})
	}
	const protocolTimeout = 30 * time.Second // one exchange, before its resend
	opts := fastOptions(nil)
	opts.Concurrency, opts.ExchangeTimeout, opts.RetryBudget = 2, protocolTimeout, -1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan []Result, 1)
	go func() { done <- NewPool(opts).Run(ctx, ts, Request{Op: OpStatus}) }()

	// Cancel only once both slots have a command in flight.
	busy := map[int]bool{}
	deadline := time.After(10 * time.Second)
	for len(busy) < opts.Concurrency {
		select {
		case port := <-heard:
			busy[port] = true
		case res := <-done:
			t.Fatalf("the run ended before cancellation: %+v", res)
		case <-deadline:
			t.Fatalf("the mute BMCs heard from only %d of %d servers in flight", len(busy), opts.Concurrency)
		}
	}
	cancelled := time.Now()
	cancel()
	const bound = 2 * time.Second // well below protocolTimeout
	var res []Result
	select {
	case res = <-done:
	case <-time.After(protocolTimeout):
		t.Fatalf("the run did not end %v after cancellation", protocolTimeout)
	}
	took := time.Since(cancelled)
	t.Logf("the run ended %v after cancellation", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("the run ended %v after cancellation, want under %v", took, bound)
	}
	if len(res) != n {
		t.Fatalf("%d results, want %d", len(res), n)
	}
	for _, r := range res {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", r.Server, r.Err)
		}
	}
}

// TestPoolConcurrencyIsFleetWide: two Runs at once on one pool share its
// concurrency limit. Each command to a silent peer takes one exchange
// timeout, so with a limit of 1 the four commands of two concurrent runs
// take four timeouts, not two.
func TestPoolConcurrencyIsFleetWide(t *testing.T) {
	addr := labAddrs(t, 234)[0]
	var ts []Target
	for _, port := range []int{623, 624, 625, 626} {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		ts = append(ts, Target{Server: fmt.Sprintf("mute%d", port), Address: addr.String(), Port: port, User: "u", Password: "p", CipherSuites: []int{3}})
	}
	opts := fastOptions(nil)
	opts.Concurrency, opts.ExchangeTimeout, opts.ExchangeRetries, opts.RetryBudget = 1, 200*time.Millisecond, -1, -1
	p := NewPool(opts)
	one := time.Now()
	if r := p.Run(context.Background(), ts[:1], Request{Op: OpStatus}); !errors.Is(r[0].Err, ErrTimeout) {
		t.Fatalf("%v, want ErrTimeout", r[0].Err)
	}
	single := time.Since(one)
	t.Logf("one command: %s", single)
	var wg sync.WaitGroup
	var r1, r2 []Result
	start := time.Now()
	wg.Add(2)
	go func() { defer wg.Done(); r1 = p.Run(context.Background(), ts[:2], Request{Op: OpStatus}) }()
	go func() { defer wg.Done(); r2 = p.Run(context.Background(), ts[2:], Request{Op: OpStatus}) }()
	wg.Wait()
	d := time.Since(start)
	for _, r := range append(r1, r2...) {
		if !errors.Is(r.Err, ErrTimeout) {
			t.Errorf("%s: %v, want ErrTimeout", r.Server, r.Err)
		}
	}
	if d < 3*single {
		t.Errorf("4 commands at concurrency 1 took %s, one takes %s: the limit is not shared between runs", d, single)
	}
}
