package bmc

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
)

// TestPowerAgainstIpmiSim drives every power action against ipmi_sim with
// the default suites [17, 3]: ipmi_sim lacks 17, so the session must fall
// back to 3. The chassis_control hook log proves each change reached the
// machine; ipmitool cross-checks the state tricenter reports.
func TestPowerAgainstIpmiSim(t *testing.T) {
	b := startSim(t, 100, nil)
	log, logs := newLog()
	c, err := NewClient(target(b, "pw-srv100"), fastOptions(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() { _ = c.Close(context.Background()) })

	st, err := c.PowerState(ctx)
	if err != nil || st != PowerOff {
		t.Fatalf("PowerState = %q, %v; want off", st, err)
	}
	if got := c.CipherSuite(); got != 3 {
		t.Errorf("cipher suite %d, want the fallback 3", got)
	}
	if !strings.Contains(logs.String(), "Cipher suite not accepted") {
		t.Error("no log of suite 17 being refused before falling back")
	}

	step := func(a PowerAction, wantSent PowerAction, wantEvents []string, wantState PowerState) {
		t.Helper()
		before := setEvents(t, b)
		ch, err := c.SetPower(ctx, a)
		if err != nil {
			t.Fatalf("power %s: %v", a, err)
		}
		if ch.Sent != wantSent {
			t.Errorf("power %s sent %q, want %q", a, ch.Sent, wantSent)
		}
		if wantState != "" {
			if err := c.WaitPower(ctx, wantState, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		// Power cycle's "on" half comes about 1 s after the "off".
		deadline := time.Now().Add(5 * time.Second)
		var got []string
		for {
			got = setEvents(t, b)[len(before):]
			if len(got) >= len(wantEvents) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !slices.Equal(got, wantEvents) {
			t.Errorf("power %s: hook saw %q, want %q", a, got, wantEvents)
		}
	}
	step(ActionOn, ActionOn, []string{"set power 1"}, PowerOn)
	if out := ipmitool(t, b, "power", "status"); !strings.Contains(out, "is on") {
		t.Errorf("ipmitool after on: %s", out)
	}
	step(ActionOn, "", nil, PowerOn) // idempotent: no chassis control sent
	step(ActionReset, ActionReset, []string{"set reset 1"}, PowerOn)
	step(ActionSoftOff, ActionSoftOff, []string{"set shutdown 1"}, PowerOff)
	step(ActionOff, "", nil, PowerOff)
	step(ActionSoftOff, "", nil, PowerOff)
	if out := ipmitool(t, b, "power", "status"); !strings.Contains(out, "is off") {
		t.Errorf("ipmitool after soft-off: %s", out)
	}
	step(ActionCycle, ActionOn, []string{"set power 1"}, PowerOn) // cycle of an off server powers it on
	step(ActionCycle, ActionCycle, []string{"set power 0", "set power 1"}, PowerOn)
	step(ActionOff, ActionOff, []string{"set power 0"}, PowerOff)
	if on, _ := b.PoweredOn(); on {
		t.Error("the simulated machine is still on after power off")
	}
	if _, err := c.SetPower(ctx, "sideways"); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown action: %v, want ErrConfig", err)
	}
}

// TestWaitPowerTimeout: waiting for a state that never comes ends at the
// deadline with ErrTimeout naming the last state.
func TestWaitPowerTimeout(t *testing.T) {
	b := startSim(t, 101, nil)
	c, _ := NewClient(target(b, "pw-srv101", 3), fastOptions(nil))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	if _, err := c.PowerState(context.Background()); err != nil { // open the session
		t.Fatal(err)
	}
	start := time.Now()
	err := c.WaitPower(context.Background(), PowerOn, 500*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "still off") {
		t.Fatalf("WaitPower = %v, want ErrTimeout and 'still off'", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("WaitPower took %s for a 500ms timeout", d)
	}
}

// TestCipherSuites: a [3]-only configuration works; [17]-only fails with
// ErrNoCipherSuite since ipmi_sim does not have 17; suite 0 is refused
// before any packet is sent.
func TestCipherSuites(t *testing.T) {
	b := startSim(t, 102, nil)
	ctx := context.Background()
	c3, _ := NewClient(target(b, "pw-srv102", 3), fastOptions(nil))
	t.Cleanup(func() { _ = c3.Close(ctx) })
	if _, err := c3.PowerState(ctx); err != nil {
		t.Fatalf("suite 3 only: %v", err)
	}
	if c3.CipherSuite() != 3 {
		t.Errorf("suite %d", c3.CipherSuite())
	}
	c17, _ := NewClient(target(b, "pw-srv102", 17), fastOptions(nil))
	start := time.Now()
	_, err := c17.PowerState(ctx)
	if !errors.Is(err, ErrNoCipherSuite) || !strings.Contains(err.Error(), "srv102") {
		t.Fatalf("suite 17 only: %v, want ErrNoCipherSuite naming the server", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal of suite 17 took %s: it should not be retried", d)
	}
	for _, suites := range [][]int{{0}, {3, 0}, {2}, {1}, {3, 3}} {
		if _, err := NewClient(target(b, "x", suites...), fastOptions(nil)); !errors.Is(err, ErrConfig) {
			t.Errorf("suites %v: %v, want ErrConfig", suites, err)
		}
	}
}

// TestBootDevice sets PXE and disk, legacy and UEFI; the hook and ipmitool
// confirm what the BMC stored.
func TestBootDevice(t *testing.T) {
	b := startSim(t, 103, nil)
	c, _ := NewClient(target(b, "pw-srv103"), fastOptions(nil))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	cases := []struct {
		o        BootOptions
		hook     string
		ipmitool string
	}{
		{BootOptions{Device: BootPXE}, "set boot pxe", "Force PXE"},
		{BootOptions{Device: BootDisk, UEFI: true}, "set boot default", "Force Boot from default Hard-Drive"},
		{BootOptions{Device: BootPXE, UEFI: true, Persistent: true}, "set boot pxe", "Force PXE"},
		{BootOptions{Device: BootDisk}, "set boot default", "Force Boot from default Hard-Drive"},
	}
	for _, tc := range cases {
		n := len(setEvents(t, b))
		st, err := c.SetBootDevice(ctx, tc.o)
		if err != nil {
			t.Fatalf("%+v: %v", tc.o, err)
		}
		if st.Device != tc.o.Device {
			t.Errorf("%+v: BMC reports %s", tc.o, st.Device)
		}
		if ev := setEvents(t, b)[n:]; !slices.Equal(ev, []string{tc.hook}) {
			t.Errorf("%+v: hook saw %q, want %q", tc.o, ev, tc.hook)
		}
		if out := ipmitool(t, b, "chassis", "bootparam", "get", "5"); !strings.Contains(out, tc.ipmitool) {
			t.Errorf("%+v: ipmitool bootparam get 5 lacks %q:\n%s", tc.o, tc.ipmitool, out)
		}
		got, err := c.BootStatus(ctx)
		if err != nil || got.Device != tc.o.Device {
			t.Errorf("BootStatus = %+v, %v", got, err)
		}
	}
	if _, err := c.SetBootDevice(ctx, BootOptions{Device: "floppy"}); !errors.Is(err, ErrConfig) {
		t.Errorf("floppy: %v, want ErrConfig", err)
	}
}

// TestUnsupportedCommand: without a chassis_control hook ipmi_sim answers
// Set System Boot Options with 0xCC; the error says unsupported and names
// the code, and is not retried.
func TestUnsupportedCommand(t *testing.T) {
	b := startSim(t, 104, func(c *ipmisim.Config) { c.NoHook = true })
	c, _ := NewClient(target(b, "pw-srv104"), fastOptions(nil))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	start := time.Now()
	_, err := c.SetBootDevice(context.Background(), BootOptions{Device: BootPXE})
	var ce *CompletionError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ce) || ce.Code != 0xCC {
		t.Fatalf("err = %v, want ErrUnsupported with completion code 0xCC", err)
	}
	for _, want := range []string{"srv104", "0xCC", "invalid data field", "Set System Boot Options"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s: an unsupported command must not be retried", d)
	}
}

// TestInventoryAgainstIpmitool compares device ID, FRU and sensors with
// what ipmitool reads from the same BMC.
func TestInventoryAgainstIpmitool(t *testing.T) {
	b := startSim(t, 105, nil)
	c, _ := NewClient(target(b, "pw-srv105"), fastOptions(nil))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	inv, err := c.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mc := ipmitool(t, b, "mc", "info")
	if !strings.Contains(mc, "Firmware Revision         : "+inv.Device.Firmware) ||
		!strings.Contains(mc, "IPMI Version              : "+inv.Device.IPMIVersion) ||
		!strings.Contains(mc, "Manufacturer ID           : 4753") || inv.Device.ManufacturerID != 4753 {
		t.Errorf("device %+v disagrees with ipmitool mc info:\n%s", inv.Device, mc)
	}
	fru := ipmitool(t, b, "fru", "print", "0")
	f := inv.FRU
	if f == nil {
		t.Fatal("no FRU")
	}
	for label, v := range map[string]string{
		"Product Manufacturer": f.Manufacturer, "Product Name": f.Product, "Product Part Number": f.PartNumber,
		"Product Serial": f.Serial, "Product Asset Tag": f.AssetTag, "Product Version": f.Version,
		"Board Mfg": f.BoardManufacturer, "Board Product": f.BoardProduct, "Board Serial": f.BoardSerial,
		"Board Part Number": f.BoardPartNumber, "Chassis Part Number": f.ChassisPartNumber, "Chassis Serial": f.ChassisSerial,
	} {
		if v == "" || !fruHas(fru, label, v) {
			t.Errorf("FRU %s = %q, ipmitool says:\n%s", label, v, fru)
		}
	}
	if f.Serial != "SN-srv105" || f.AssetTag != "AT-srv105" || len(f.Problems) > 0 {
		t.Errorf("FRU %+v", f)
	}
	if inv.Facts != (Facts{Manufacturer: "Tricenter Lab", Model: "TL-1000 Server", Serial: "SN-srv105"}) {
		t.Errorf("facts %+v", inv.Facts)
	}
	if l := inv.Facts.Labels(); l[LabelModel] != "TL-1000_Server" || l[LabelSerial] != "SN-srv105" {
		t.Errorf("labels %v", l)
	}

	// Sensors: the reading and status of each, by sensor number, as
	// ipmitool's "sdr elist" shows them.
	sdr := ipmitool(t, b, "sdr", "elist")
	want := map[uint8]struct {
		value  string
		unit   string
		status string
		states []string
	}{
		1: {"24", "degrees C", "ok", nil}, 2: {"51", "degrees C", "ok", nil},
		3: {"4800", "RPM", "ok", nil}, 4: {"5000", "RPM", "ok", nil}, 5: {"12", "Volts", "ok", nil},
		6: {"", "", "ok", []string{"presence detected"}},
		7: {"", "", "failed", []string{"presence detected", "failure detected"}},
	}
	if len(inv.Sensors) != len(want) {
		t.Fatalf("%d sensors, want %d: %+v", len(inv.Sensors), len(want), inv.Sensors)
	}
	for _, s := range inv.Sensors {
		w := want[s.Number]
		line := sdrLine(sdr, s.Number)
		if line == "" {
			t.Errorf("ipmitool has no sensor %d:\n%s", s.Number, sdr)
			continue
		}
		if w.value != "" {
			if s.Value == nil || formatValue(*s.Value) != w.value || s.Unit != w.unit {
				t.Errorf("sensor %d %q = %v %s, want %s %s", s.Number, s.Name, s.Value, s.Unit, w.value, w.unit)
			}
			if !strings.Contains(line, "| "+w.value+" "+w.unit) {
				t.Errorf("ipmitool disagrees on sensor %d: %s", s.Number, line)
			}
		}
		if s.Status != w.status || !slices.Equal(s.States, w.states) {
			t.Errorf("sensor %d %q: status %s states %q, want %s %q", s.Number, s.Name, s.Status, s.States, w.status, w.states)
		}
	}
	// "FAN1" is stored as 6-bit packed ASCII by sdrcomp; it must decode.
	if inv.Sensors[2].Name != "FAN1" || inv.Sensors[0].Name != "Inlet Temp" {
		t.Errorf("names %q, %q", inv.Sensors[0].Name, inv.Sensors[2].Name)
	}
	if !strings.Contains(sdrLine(sdr, 7), "Failure detected") {
		t.Errorf("ipmitool does not see PSU2's failure: %s", sdrLine(sdr, 7))
	}
}

func fruHas(out, label, v string) bool {
	for _, l := range strings.Split(out, "\n") {
		k, val, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == label && strings.TrimSpace(val) == v {
			return true
		}
	}
	return false
}

// sdrLine finds sensor n's line in "ipmitool sdr elist" output (column 2
// is the sensor number, "03h").
func sdrLine(out string, n uint8) string {
	for _, l := range strings.Split(out, "\n") {
		cols := strings.Split(l, "|")
		if len(cols) >= 5 && strings.TrimSpace(cols[1]) == strings.ToLower(strings.TrimSpace(hex2(n)))+"h" {
			return l
		}
	}
	return ""
}

func hex2(n uint8) string {
	const d = "0123456789abcdef"
	return string([]byte{d[n>>4], d[n&0xf]})
}

// TestNoFRU: a BMC without FRU data still gives an inventory.
func TestNoFRU(t *testing.T) {
	b := startSim(t, 106, func(c *ipmisim.Config) { c.FRU = nil; c.Sensors = nil })
	c, _ := NewClient(target(b, "pw-srv106"), fastOptions(nil))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	inv, err := c.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if inv.FRU != nil || inv.Facts != (Facts{}) || len(inv.Sensors) != 0 {
		t.Errorf("inventory %+v", inv)
	}
}

// TestBadCredentials: a wrong password or user is a clear ErrAuth, at
// once (no retries), and neither errors nor debug logs hold the password.
func TestBadCredentials(t *testing.T) {
	b := startSim(t, 107, nil)
	log, logs := newLog()
	for _, tc := range []struct{ user, pass string }{{"admin", "not-the-password"}, {"nobody", "pw-srv107"}} {
		tg := target(b, tc.pass)
		tg.User = tc.user
		c, _ := NewClient(tg, fastOptions(log))
		start := time.Now()
		_, err := c.PowerState(context.Background())
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("user %s: %v, want ErrAuth", tc.user, err)
		}
		if errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable) {
			t.Errorf("auth error also classified as timeout/unreachable: %v", err)
		}
		if !strings.Contains(err.Error(), "srv107") || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("error %q does not name the server and the cause", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("bad credentials took %s: must not be retried", d)
		}
		mustNotLeak(t, "error", err.Error(), tc.pass)
		mustNotLeak(t, "log", logs.String(), tc.pass)
	}
}

// TestNeverAnswers: a peer that swallows every packet gives ErrTimeout
// within the retry budget (after retrying), and within the context
// deadline when that is shorter.
func TestNeverAnswers(t *testing.T) {
	addr := labAddrs(t, 230)[0]
	pc, err := net.ListenPacket("udp", addr.String()+":623")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() { // read and drop
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	log, logs := newLog()
	opts := fastOptions(log)
	opts.RetryBudget = 1500 * time.Millisecond
	opts.ExchangeTimeout = 200 * time.Millisecond
	tg := Target{Server: "mute", Address: addr.String(), Port: 623, User: "admin", Password: "pw", CipherSuites: []int{17, 3}}
	c, _ := NewClient(tg, opts)
	start := time.Now()
	_, err = c.PowerState(context.Background())
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "mute") {
		t.Fatalf("err = %v, want ErrTimeout naming the server", err)
	}
	if d > 4*time.Second {
		t.Errorf("took %s with a 1.5s retry budget", d)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Error("no retry was logged")
	}

	opts.RetryBudget = time.Minute
	c2, _ := NewClient(tg, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c2.PowerState(ctx)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("with a 700ms deadline: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("a 700ms deadline took %s", d)
	}
}

// TestUnreachable: nothing listens at the address: ErrUnreachable, fast.
func TestUnreachable(t *testing.T) {
	addr := labAddrs(t, 231)[0]
	tg := Target{Server: "ghost", Address: addr.String(), Port: 623, User: "admin", Password: "pw", CipherSuites: []int{3}}
	c, _ := NewClient(tg, fastOptions(nil))
	start := time.Now()
	_, err := c.PowerState(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("err = %v, want ErrUnreachable naming the server", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
	tg.Address = "no-such-bmc.invalid"
	c, _ = NewClient(tg, fastOptions(nil))
	if _, err := c.PowerState(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("unresolvable name: %v, want ErrUnreachable", err)
	}
}

// TestMinIntervalAndSessionReuse: commands to one BMC are spaced by
// MinInterval and share one session until it idles out.
func TestMinIntervalAndSessionReuse(t *testing.T) {
	b := startSim(t, 108, nil)
	opts := fastOptions(nil)
	opts.MinInterval = 200 * time.Millisecond
	c, _ := NewClient(target(b, "pw-srv108", 3), opts)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	start := time.Now()
	var sessions []any
	for i := 0; i < 4; i++ {
		if _, err := c.PowerState(ctx); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		sessions = append(sessions, c.conn)
		c.mu.Unlock()
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("4 commands took %s, want at least 3 x 200ms", d)
	}
	for _, s := range sessions[1:] {
		if s != sessions[0] {
			t.Fatal("the session was not reused")
		}
	}
	c.mu.Lock()
	c.opts.SessionIdle = time.Nanosecond
	c.mu.Unlock()
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	renewed := c.conn != sessions[0]
	c.mu.Unlock()
	if !renewed {
		t.Error("an idle session was not renewed")
	}
}

func formatValue(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}
