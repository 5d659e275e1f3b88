package ipmisim

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

func needSim(t *testing.T) {
	t.Helper()
	testenv.Need(t, Available())
	testenv.RequireBinary(t, "ipmitool")
}

func ipmitool(t *testing.T, b *BMC, _ string, args ...string) string {
	t.Helper()
	out, err := b.Ipmitool(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// labAddr configures the lab address of index idx for the test.
func labAddr(t *testing.T, idx int) netip.Addr {
	t.Helper()
	addrs, closeFn, err := LabAddrs(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeFn(); err != nil {
			t.Error(err)
		}
	})
	return addrs[0]
}

func TestLabAddr(t *testing.T) {
	for i, want := range map[int]string{0: "198.18.48.1", 253: "198.18.48.254", 254: "198.18.49.1",
		508: "198.18.50.1", 4063: "198.18.63.254"} {
		a, err := LabAddr(i)
		if err != nil || a.String() != want {
			t.Errorf("LabAddr(%d) = %v, %v; want %s", i, a, err, want)
		}
		if !LabBlock.Contains(a) {
			t.Errorf("LabAddr(%d) = %v is outside %v", i, a, LabBlock)
		}
	}
	for _, i := range []int{-1, 4064} {
		if _, err := LabAddr(i); err == nil {
			t.Errorf("LabAddr(%d) did not fail", i)
		}
	}
}

// TestLabAddrs: the addresses can be bound while the interface exists,
// and are gone after close; an interface left by a dead process is
// removed by the next call, one of a live process is kept.
func TestLabAddrs(t *testing.T) {
	testenv.Need(t, LabAvailable())
	ctx := context.Background()
	addrs, closeFn, err := LabAddrs(ctx, 257, 258)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeFn() })
	if len(addrs) != 2 || addrs[0].String() != "198.18.49.4" || addrs[1].String() != "198.18.49.5" {
		t.Fatalf("addresses %v", addrs)
	}
	for _, a := range addrs {
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(a, 0).String())
		if err != nil {
			t.Fatalf("binding %s: %v", a, err)
		}
		pc.Close()
	}
	if _, _, err := LabAddrs(ctx, 259, 259); err == nil {
		t.Error("an index given twice was accepted")
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	if err := closeFn(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := net.ListenPacket("udp", netip.AddrPortFrom(addrs[0], 0).String()); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Errorf("binding %s after close: %v, want EADDRNOTAVAIL", addrs[0], err)
	}

	// Orphans: a process that has exited, and this (live) process.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := "tcbmc" + strconv.FormatInt(int64(dead.Process.Pid), 36) + "-0000"
	live := "tcbmc" + strconv.FormatInt(int64(os.Getpid()), 36) + "-0000"
	for _, name := range []string{orphan, live} {
		if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	}
	_, closeFn2, err := LabAddrs(ctx, 259)
	if err != nil {
		t.Fatal(err)
	}
	if err := closeFn2(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/" + orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan interface %s is still there (%v)", orphan, err)
	}
	if _, err := os.Stat("/sys/class/net/" + live); err != nil {
		t.Errorf("the interface %s of a live process was removed: %v", live, err)
	}
}

func TestEncodeFRUFieldTooLong(t *testing.T) {
	if _, err := EncodeFRU(FRU{Serial: strings.Repeat("x", 64)}); err == nil {
		t.Fatal("a 64-byte field was accepted")
	}
	if _, err := EncodeFRU(FRU{Manufacturer: strings.Repeat("x", 60), Product: strings.Repeat("y", 60),
		PartNumber: strings.Repeat("z", 60), Serial: strings.Repeat("s", 60), AssetTag: strings.Repeat("a", 60)}); err == nil {
		t.Fatal("an image larger than 256 bytes was accepted")
	}
}

// TestSimAgainstIpmitool checks the generated configuration with ipmitool:
// power through the hook, boot device, FRU and SDRs.
func TestSimAgainstIpmitool(t *testing.T) {
	needSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := labAddr(t, 254)
	b, err := Start(ctx, Config{
		Name: "selftest", Address: addr, User: "admin", Password: "pw-selftest", Dir: t.TempDir(),
		FRU: &FRU{Manufacturer: "Tricenter Lab", Product: "TL-1000", PartNumber: "P-1000",
			Serial: "SN-0001", AssetTag: "AT-1", BoardManufacturer: "Board Co", BoardSerial: "BS-1"},
		Sensors: DefaultSensors(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })

	if out := ipmitool(t, b, "pw-selftest", "power", "status"); !strings.Contains(out, "is off") {
		t.Errorf("power status: %s", out)
	}
	ipmitool(t, b, "pw-selftest", "power", "on")
	if err := b.WaitEvent(ctx, "set power 1"); err != nil {
		t.Fatal(err)
	}
	if on, err := b.PoweredOn(); err != nil || !on {
		t.Errorf("PoweredOn = %v, %v after power on", on, err)
	}
	ipmitool(t, b, "pw-selftest", "chassis", "bootdev", "pxe")
	if dev, _ := b.BootDevice(); dev != "pxe" {
		t.Errorf("boot device %q, want pxe", dev)
	}
	fru := ipmitool(t, b, "pw-selftest", "fru", "print", "0")
	for _, want := range []string{"Product Manufacturer  : Tricenter Lab", "Product Name          : TL-1000",
		"Product Serial        : SN-0001", "Product Asset Tag     : AT-1", "Board Serial          : BS-1"} {
		if !strings.Contains(fru, want) {
			t.Errorf("fru print lacks %q:\n%s", want, fru)
		}
	}
	sdr := ipmitool(t, b, "pw-selftest", "sdr", "elist")
	for _, want := range []string{"Inlet Temp", "24 degrees C", "5000 RPM", "12 Volts", "Presence detected", "Failure detected"} {
		if !strings.Contains(sdr, want) {
			t.Errorf("sdr elist lacks %q:\n%s", want, sdr)
		}
	}
	// The password must not be on ipmi_sim's command line.
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(b.Pid()), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte("pw-selftest")) {
		t.Error("the password is on ipmi_sim's command line")
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if exited, _ := b.Exited(); !exited {
		t.Error("ipmi_sim still running after Stop")
	}
}

// TestPluggablePower plugs shell commands into the hook, the way the lab
// plugs virsh or machinectl.
func TestPluggablePower(t *testing.T) {
	needSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := labAddr(t, 255)
	b, err := Start(ctx, Config{
		Name: "plug", Address: addr, User: "admin", Password: "pw", Dir: t.TempDir(),
		Power: Power{
			On:     `touch "$IPMISIM_DIR/machine-running"; echo start >> "$IPMISIM_DIR/machine.log"`,
			Off:    `rm -f "$IPMISIM_DIR/machine-running"; echo destroy >> "$IPMISIM_DIR/machine.log"`,
			Status: `[ -e "$IPMISIM_DIR/machine-running" ]`,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	ipmitool(t, b, "pw", "power", "on")
	if out := ipmitool(t, b, "pw", "power", "status"); !strings.Contains(out, "is on") {
		t.Errorf("after power on: %s", out)
	}
	ipmitool(t, b, "pw", "power", "off")
	if out := ipmitool(t, b, "pw", "power", "status"); !strings.Contains(out, "is off") {
		t.Errorf("after power off: %s", out)
	}
	log, err := os.ReadFile(filepath.Join(b.Dir(), "machine.log"))
	if err != nil {
		t.Fatal(err)
	}
	if string(log) != "start\ndestroy\n" {
		t.Errorf("machine log %q, want start then destroy", log)
	}
}

// TestAddressTaken: a second BMC on a busy address is refused with a clear
// error instead of being mistaken for the first one.
func TestAddressTaken(t *testing.T) {
	needSim(t)
	addr := labAddr(t, 256)
	dir := t.TempDir()
	ctx := context.Background()
	b, err := Start(ctx, Config{Name: "first", Address: addr, User: "admin", Password: "pw", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	_, err = Start(ctx, Config{Name: "second", Address: addr, User: "admin", Password: "pw", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "is taken") {
		t.Fatalf("err = %v, want 'is taken'", err)
	}
	for _, bad := range []Config{
		{Name: "x y", Address: addr, User: "a", Dir: dir},
		{Name: "x", Address: netip.MustParseAddr("10.1.2.3"), User: "a", Dir: dir},
		{Name: "x", Address: netip.MustParseAddr("127.0.1.1"), User: "a", Dir: dir},
		{Name: "x", Address: addr, User: "a", Password: `p"w`, Dir: dir},
		{Name: "x", Address: addr, User: "a", Dir: dir, Sensors: []Sensor{{Number: 0, Name: "n", Kind: Fan}}},
	} {
		if _, err := Start(ctx, bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
	// A lab address nobody configured.
	notHere, _ := LabAddr(300)
	_, err = Start(ctx, Config{Name: "nowhere", Address: notHere, User: "admin", Password: "pw", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "not configured on this machine") {
		t.Errorf("unconfigured address: %v, want 'not configured on this machine'", err)
	}
}
