package bmc

// Unit tests against fakes: go-ipmi's embeddable reference BMC (pkg/server
// with the mock HAL) covers what ipmi_sim cannot, cipher suite 17 and the
// stored UEFI boot flag, and a fake "busy" front end answers Open Session
// with "insufficient resources" to exercise the retry budget.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gobmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
)

// startFakeBMC serves go-ipmi's reference BMC on an ephemeral loopback port.
func startFakeBMC(t *testing.T, user, pass string) (*net.UDPAddr, *mock.Chassis) {
	t.Helper()
	h := mock.New()
	b := gobmc.New(gobmc.DeviceInfo{DeviceID: 32, DeviceRevision: 1, FirmwareMajor: 1, IPMIVersion: 0x20,
		ManufacturerID: 0x157, ProductID: 1, AdditionalDeviceSupport: 0x39}, [16]byte{1, 2, 3}, h, gobmc.WithClock(clock.Real))
	u, err := b.Users.Add(2, user)
	if err != nil {
		t.Fatal(err)
	}
	u.SetPassword([]byte(pass))
	u.Enabled = true
	u.ChannelAccess[1] = gobmc.UserChannelAccess{MaxPrivilege: gobmc.PrivilegeLevelAdministrator, Enabled: true}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.NewServer(b, udp.Wrap(pc)).Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		_ = pc.Close()
		<-done
	})
	ch, ok := h.Chassis().(*mock.Chassis)
	if !ok {
		t.Fatal("mock HAL without a mock chassis")
	}
	return pc.LocalAddr().(*net.UDPAddr), ch
}

func TestSuite17WithFakeBMC(t *testing.T) {
	addr, ch := startFakeBMC(t, "admin", "fake-pw")
	c, err := NewClient(Target{Server: "fake", Address: addr.IP.String(), Port: addr.Port, User: "admin",
		Password: "fake-pw", CipherSuites: []int{17, 3}}, fastOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	if _, err := c.SetPower(ctx, ActionOn); err != nil {
		t.Fatal(err)
	}
	if c.CipherSuite() != 17 {
		t.Errorf("cipher suite %d, want 17 when the BMC has it", c.CipherSuite())
	}
	if on, _ := ch.PowerState(ctx); !on {
		t.Error("fake chassis not powered on")
	}
}

func TestUEFIBootFlagsWithFakeBMC(t *testing.T) {
	addr, ch := startFakeBMC(t, "admin", "fake-pw")
	c, _ := NewClient(Target{Server: "fake", Address: addr.IP.String(), Port: addr.Port, User: "admin",
		Password: "fake-pw", CipherSuites: []int{17}}, fastOptions(nil))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	for _, o := range []BootOptions{{Device: BootPXE, UEFI: true}, {Device: BootDisk}, {Device: BootDisk, UEFI: true, Persistent: true}} {
		st, err := c.SetBootDevice(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ch.GetBootFlags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantSel := types.BootDeviceSelectorForcePXE
		if o.Device == BootDisk {
			wantSel = types.BootDeviceSelectorForceHardDrive
		}
		if f.BootDeviceSelector != wantSel || (f.BIOSBootType == types.BIOSBootTypeEFI) != o.UEFI || f.Persist != o.Persistent || !f.BootFlagsValid {
			t.Errorf("%+v: fake BMC stored %+v", o, f)
		}
		if st.Device != o.Device || st.UEFI != o.UEFI || !st.Valid {
			t.Errorf("%+v: read back %+v", o, st)
		}
	}
}

// busyFront is a fake BMC front end: it answers the first busyFor RMCP+
// Open Session requests itself with status 0x01 (insufficient resources)
// and relays everything else to the real BMC behind it.
type busyFront struct {
	pc       net.PacketConn
	upstream *net.UDPConn
	mu       sync.Mutex
	busyFor  int
	refused  int
	client   net.Addr
}

func startBusyFront(t *testing.T, behind *net.UDPAddr, busyFor int) *busyFront {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, behind)
	if err != nil {
		t.Fatal(err)
	}
	f := &busyFront{pc: pc, upstream: up, busyFor: busyFor}
	t.Cleanup(func() { pc.Close(); up.Close() })
	go func() { // BMC -> client
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			f.mu.Lock()
			cl := f.client
			f.mu.Unlock()
			if cl != nil {
				_, _ = pc.WriteTo(buf[:n], cl)
			}
		}
	}()
	go func() { // client -> BMC, or the fake "busy" answer
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.client = from
			busy := n >= 16 && buf[4] == 0x06 && buf[5]&0x3f == 0x10 && f.refused < f.busyFor
			if busy {
				f.refused++
			}
			f.mu.Unlock()
			if !busy {
				_, _ = up.Write(buf[:n])
				continue
			}
			// RMCP+ Open Session Response: same tag, status 0x01, the
			// console's session ID echoed.
			req := buf[16:n]
			resp := make([]byte, 36)
			resp[0], resp[1] = req[0], 0x01
			copy(resp[4:8], req[4:8])
			pkt := append([]byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(resp)), 0}, resp...)
			_, _ = pc.WriteTo(pkt, from)
		}
	}()
	return f
}

func TestInsufficientResourcesRetried(t *testing.T) {
	addr, _ := startFakeBMC(t, "admin", "fake-pw")
	front := startBusyFront(t, addr, 2)
	fa := front.pc.LocalAddr().(*net.UDPAddr)
	log, logs := newLog()
	opts := fastOptions(log)
	opts.RetryBudget = 10 * time.Second
	c, _ := NewClient(Target{Server: "busy", Address: fa.IP.String(), Port: fa.Port, User: "admin",
		Password: "fake-pw", CipherSuites: []int{17}}, opts)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	start := time.Now()
	st, err := c.PowerState(context.Background())
	if err != nil || st != PowerOff {
		t.Fatalf("PowerState = %q, %v", st, err)
	}
	if n := strings.Count(logs.String(), "retrying"); n != 2 {
		t.Errorf("%d retries logged, want 2:\n%s", n, logs)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("retries took %s: no backoff", d)
	}

	// A BMC that stays busy: ErrBusy once the budget is spent.
	front2 := startBusyFront(t, addr, 1000)
	fa2 := front2.pc.LocalAddr().(*net.UDPAddr)
	opts.RetryBudget = time.Second
	c2, _ := NewClient(Target{Server: "busy", Address: fa2.IP.String(), Port: fa2.Port, User: "admin",
		Password: "fake-pw", CipherSuites: []int{17}}, opts)
	start = time.Now()
	_, err = c2.PowerState(context.Background())
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "insufficient resources") || !strings.Contains(err.Error(), "retry budget") {
		t.Fatalf("err = %v, want ErrBusy after the retry budget", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a 1s budget took %s", d)
	}
}
