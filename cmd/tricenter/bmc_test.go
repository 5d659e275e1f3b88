package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// bmcLab starts three ipmi_sim BMCs on lab addresses (ipmisim.LabAddr
// indices 508-510 of this package's block 508-761: 198.18.50.1 to .3, on
// an interface the test's cleanup deletes) and writes an inventory
// describing them, one per center, that passes validation. s2
// uses cipher suites [3]; s1 and s3 the default [17, 3]. The password of s1
// and s2 comes from $TRICENTER_TEST_BMC_PW, s3's from a file.
func bmcLab(t *testing.T) (string, []*ipmisim.BMC) {
	t.Helper()
	testenv.Need(t, ipmisim.Available())
	testenv.RequireBinary(t, "ipmitool")
	addrs, closeAddrs, err := ipmisim.LabAddrs(context.Background(), 508, 509, 510)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeAddrs(); err != nil {
			t.Error(err)
		}
	})
	dir := t.TempDir()
	const pw = "cli-s3cret"
	var cfgs []ipmisim.Config
	for i, addr := range addrs {
		name := fmt.Sprintf("s%d", i+1)
		cfgs = append(cfgs, ipmisim.Config{Name: name, Address: addr, User: "admin", Password: pw, Dir: dir,
			Sensors: ipmisim.DefaultSensors(),
			FRU:     &ipmisim.FRU{Manufacturer: "Tricenter Lab", Product: "TL-1000", Serial: "SN-" + name, PartNumber: "P-1"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bmcs, err := ipmisim.StartAll(ctx, cfgs, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipmisim.StopAll(bmcs) })
	t.Setenv("TRICENTER_TEST_BMC_PW", pw)
	pwFile := filepath.Join(dir, "bmc.pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := fmt.Sprintf(`apiVersion: tricenter.io/v1alpha1
kind: Cluster
metadata: {name: bmc-cli}
spec:
  sites: [{name: site-a}, {name: site-b}]
  centers:
    - {name: dc1, site: site-a, role: production, rttMs: {dc2: 1, dc3: 20}}
    - {name: dc2, site: site-a, role: local-dr, rttMs: {dc1: 1, dc3: 21}}
    - {name: dc3, site: site-b, role: remote-dr, rttMs: {dc1: 20, dc2: 21}}
  ssh: {user: root, keyFile: /dev/null}
  network: {podCIDR: 198.19.128.0/17, serviceCIDR: 198.19.64.0/18, loadBalancerPool: [198.19.32.0/24]}
  racks:
    - name: dc1-r01
      center: dc1
      subnet: 198.18.240.0/24
      tor: {name: dc1-r01-tor, asn: 65100, address: 198.18.240.1}
      servers:
        - name: s1
          roles: [etcd, control-plane]
          ssh: {address: 198.18.240.10}
          bmc: {address: %s, user: admin, password: {env: TRICENTER_TEST_BMC_PW}}
    - name: dc2-r01
      center: dc2
      subnet: 198.18.241.0/24
      tor: {name: dc2-r01-tor, asn: 65101, address: 198.18.241.1}
      servers:
        - name: s2
          roles: [etcd, control-plane]
          ssh: {address: 198.18.241.10}
          bmc: {address: %s, user: admin, password: {env: TRICENTER_TEST_BMC_PW}, cipherSuites: [3]}
    - name: dc3-r01
      center: dc3
      subnet: 198.18.242.0/24
      tor: {name: dc3-r01-tor, asn: 65102, address: 198.18.242.1}
      servers:
        - name: s3
          roles: [etcd, worker]
          ssh: {address: 198.18.242.10}
          bmc: {address: %s, user: admin, password: {file: %s}}
`, bmcs[0].Address(), bmcs[1].Address(), bmcs[2].Address(), pwFile)
	path := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(path, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, bmcs
}

func TestBMCCommands(t *testing.T) {
	inv, bmcs := bmcLab(t)
	fast := []string{"--min-interval", "0s", "--log-level", "warn"}

	out, errOut, code := runCLI(t, append([]string{"bmc", "status", "-f", inv}, fast...)...)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"SERVER", "POWER", "s1", "s2", "s3", "off", "ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "cli-s3cret") {
		t.Error("the password was printed")
	}
	if strings.Contains(errOut, "Warning") {
		t.Errorf("the lab inventory got warnings:\n%s", errOut)
	}

	// Power on one center, then check with ipmitool and the hook.
	out, errOut, code = runCLI(t, append([]string{"bmc", "on", "-f", inv, "--center", "dc2", "--wait", "10s"}, fast...)...)
	if code != 0 || !strings.Contains(out, "s2") || strings.Contains(out, "s1") {
		t.Fatalf("on --center dc2: exit %d\n%s%s", code, out, errOut)
	}
	if got, _ := bmcs[1].Ipmitool(context.Background(), "power", "status"); !strings.Contains(got, "is on") {
		t.Errorf("ipmitool says %q after on", got)
	}
	if on, _ := bmcs[0].PoweredOn(); on {
		t.Error("s1 was powered on but not selected")
	}

	// Idempotent: a second on sends nothing.
	out, _, code = runCLI(t, append([]string{"bmc", "on", "-f", inv, "--server", "s2"}, fast...)...)
	if code != 0 || !strings.Contains(out, "already on") {
		t.Errorf("second on: exit %d\n%s", code, out)
	}
	if ev, _ := bmcs[1].SetEvents(); len(ev) != 1 {
		t.Errorf("hook saw %q, want one power on", ev)
	}

	// PXE, UEFI, by rack; JSON output.
	out, errOut, code = runCLI(t, append([]string{"bmc", "pxe", "-f", inv, "--rack", "dc3-r01", "--uefi", "-o", "json"}, fast...)...)
	if code != 0 {
		t.Fatalf("pxe: exit %d\n%s%s", code, out, errOut)
	}
	var doc struct {
		Operation string `json:"operation"`
		Results   []struct {
			Server string `json:"server"`
			Boot   struct {
				Device string `json:"device"`
			} `json:"boot"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Operation != "pxe" || len(doc.Results) != 1 || doc.Results[0].Server != "s3" || doc.Results[0].Boot.Device != "pxe" {
		t.Errorf("pxe JSON: %+v", doc)
	}
	if dev, _ := bmcs[2].BootDevice(); dev != "pxe" {
		t.Errorf("s3 boot device %q", dev)
	}

	// Inventory by role.
	out, errOut, code = runCLI(t, append([]string{"bmc", "inventory", "-f", inv, "--role", "worker"}, fast...)...)
	if code != 0 || !strings.Contains(out, "SN-s3") || !strings.Contains(out, "TL-1000") || !strings.Contains(out, "PSU2 Status: failed") {
		t.Errorf("inventory: exit %d\n%s%s", code, out, errOut)
	}

	// cycle and off of every server with waiting (--all, confirmed by --yes).
	for _, args := range [][]string{{"cycle", "--all", "--yes", "--wait", "10s"}, {"off", "--all", "-y", "--wait", "10s"}, {"disk"}} {
		out, errOut, code = runCLI(t, append(append([]string{"bmc", args[0], "-f", inv}, args[1:]...), fast...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", args[0], code, out, errOut)
		}
	}
	for _, b := range bmcs {
		if on, _ := b.PoweredOn(); on {
			t.Errorf("%s still on after off", b.Name())
		}
		if dev, _ := b.BootDevice(); dev != "default" {
			t.Errorf("%s boot device %q after disk", b.Name(), dev)
		}
	}
}

// TestBMCCommandErrors: a wrong password fails that server only, with a
// clear message and exit status 1; bad flags and selections are refused.
func TestBMCCommandErrors(t *testing.T) {
	inv, _ := bmcLab(t)
	pwFile := filepath.Join(filepath.Dir(inv), "bmc.pw")
	if err := os.WriteFile(pwFile, []byte("wrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "bmc", "status", "-f", inv, "--min-interval", "0s", "--log-level", "error")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "s3") || !strings.Contains(out, "credentials") || strings.Count(out, " ok\n") != 2 {
		t.Errorf("table:\n%s", out)
	}
	if !strings.Contains(errOut, "status failed on 1 of 3 servers") || strings.Contains(out+errOut, "wrong-password") {
		t.Errorf("stderr:\n%s", errOut)
	}
	// A loopback BMC address is refused like by every other command.
	doc, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(filepath.Dir(inv), "loopback.yaml")
	if err := os.WriteFile(loop, []byte(strings.Replace(string(doc), "address: 198.18.50.1,", "address: 127.0.1.1,", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, "bmc", "status", "-f", loop); code == 0 || !strings.Contains(errOut, "spec.racks[0].servers[0].bmc.address") || !strings.Contains(errOut, "loopback") {
		t.Errorf("loopback BMC address: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"bmc", "status", "-f", inv, "--server", "nope"},
		{"bmc", "status", "-f", inv, "--role", "chef"},
		{"bmc", "status", "-f", inv, "-o", "yaml"},
		{"bmc", "status", "-f", inv, "--concurrency", "0"},
	} {
		if _, errOut, code := runCLI(t, args...); code == 0 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestBMCPowerOffGuard: off, soft-off, cycle and reset need a selection or
// --all, and ask before taking more than one server down; the BMCs'
// hooks show that a refused or unconfirmed command sent nothing.
func TestBMCPowerOffGuard(t *testing.T) {
	inv, bmcs := bmcLab(t)
	fast := []string{"--min-interval", "0s", "--log-level", "warn", "--wait", "10s"}
	run := func(in io.Reader, args ...string) (string, string, int) {
		t.Helper()
		return runCLIIn(t, in, append(append([]string{"bmc"}, args...), fast...)...)
	}
	if _, errOut, code := run(nil, "on", "-f", inv); code != 0 {
		t.Fatalf("on (no selection: every server): exit %d\n%s", code, errOut)
	}
	eventsBefore := func() []int {
		var n []int
		for _, b := range bmcs {
			ev, _ := b.SetEvents()
			n = append(n, len(ev))
		}
		return n
	}
	nothingSent := func(what string, before []int) {
		t.Helper()
		for i, b := range bmcs {
			ev, _ := b.SetEvents()
			if len(ev) != before[i] {
				t.Errorf("%s: %s received %q", what, b.Name(), ev[before[i]:])
			}
			if on, _ := b.PoweredOn(); !on {
				t.Errorf("%s: %s is off", what, b.Name())
			}
		}
	}

	before := eventsBefore()
	for _, op := range []string{"off", "soft-off", "cycle", "reset"} {
		_, errOut, code := run(nil, op, "-f", inv, "--yes")
		if code == 0 || !strings.Contains(errOut, "name servers, racks, a center, or --all") {
			t.Errorf("%s without a selection: exit %d\n%s", op, code, errOut)
		}
	}
	if _, errOut, code := run(nil, "off", "-f", inv, "--all", "--center", "dc1", "--yes"); code == 0 || !strings.Contains(errOut, "--all selects every server") {
		t.Errorf("--all with --center: exit %d\n%s", code, errOut)
	}
	nothingSent("refused without a selection", before)

	// Answered n: the list of what would go dark, then nothing.
	out, errOut, code := run(strings.NewReader("n\n"), "off", "-f", inv, "--all")
	if code != 1 || !strings.Contains(errOut, "not confirmed") {
		t.Errorf("off --all answered n: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"bmc off: these 3 servers will be powered off hard:",
		"center dc1  rack dc1-r01  s1 (etcd, control-plane)",
		"center dc2  rack dc2-r01  s2 (etcd, control-plane)",
		"center dc3  rack dc3-r01  s3 (etcd, worker)",
		"Power off these 3 servers? [y/N]",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the confirmation lacks %q:\n%s", want, errOut)
		}
	}
	// stdin not a terminal and no --yes: refused, naming --yes.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if _, errOut, code := run(devnull, "reset", "-f", inv, "--rack", "dc1-r01,dc2-r01"); code == 0 || !strings.Contains(errOut, "stdin is not a terminal") || !strings.Contains(errOut, "--yes") {
		t.Errorf("reset of 2 servers, stdin not a terminal: exit %d\n%s", code, errOut)
	}
	nothingSent("not confirmed", before)

	// One server needs no confirmation, even without a terminal.
	if out, errOut, code := run(devnull, "off", "-f", inv, "--server", "s3"); code != 0 || !strings.Contains(out, "s3") {
		t.Errorf("off of one server: exit %d\n%s%s", code, out, errOut)
	}
	if on, _ := bmcs[2].PoweredOn(); on {
		t.Error("s3 still on after off --server s3")
	}

	// Answered y, -o json: the question goes to stderr, stdout stays JSON.
	out, errOut, code = run(strings.NewReader("y\n"), "off", "-f", inv, "--center", "dc1,dc2", "-o", "json")
	if code != 0 || !strings.Contains(errOut, "Power off these 2 servers? [y/N]") {
		t.Fatalf("off --center dc1,dc2 answered y: exit %d\n%s%s", code, out, errOut)
	}
	var doc struct {
		Results []struct {
			Server string `json:"server"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Results) != 2 {
		t.Errorf("stdout is not the JSON of 2 results: %v\n%s", err, out)
	}
	for _, b := range bmcs[:2] {
		if on, _ := b.PoweredOn(); on {
			t.Errorf("%s still on after a confirmed off", b.Name())
		}
	}
}
