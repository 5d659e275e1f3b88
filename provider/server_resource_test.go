package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	acc "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestParseImportID(t *testing.T) {
	tests := []struct {
		id, user, host string
		port           int64
		err            string
	}{
		{id: "198.18.0.10", host: "198.18.0.10", port: 623},
		{id: "198.18.0.10:6230", host: "198.18.0.10", port: 6230},
		{id: "admin@198.18.0.10:623", user: "admin", host: "198.18.0.10", port: 623},
		{id: "[2001:db8::1]:623", host: "2001:db8::1", port: 623},
		{id: "bmc-r1.example", host: "bmc-r1.example", port: 623},
		{id: "198.18.0.10:0", err: "not a UDP port"},
		{id: "198.18.0.10:x", err: "not a UDP port"},
		{id: "@198.18.0.10", err: "1 to 16 bytes"},
		{id: "", err: "use [user@]address[:port]"},
		{id: "a/b", err: "use [user@]address[:port]"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			user, host, port, err := parseImportID(tt.id)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || user != tt.user || host != tt.host || port != tt.port {
				t.Fatalf("= %q %q %d %v, want %q %q %d", user, host, port, err, tt.user, tt.host, tt.port)
			}
		})
	}
}

func baseModel() serverResourceModel {
	return serverResourceModel{
		Name: types.StringValue("s1"), Address: types.StringValue("198.18.51.1"), Port: types.Int64Value(623),
		User: types.StringNull(), Password: types.StringNull(), PasswordEnv: types.StringNull(), PasswordFile: types.StringNull(),
		CipherSuites: types.ListNull(types.Int64Type),
	}
}

// TestServerTarget checks credential precedence: the write-only password,
// then the resource's reference, then the provider's.
func TestServerTarget(t *testing.T) {
	t.Setenv("RES_PW", "res-pw")
	t.Setenv("PROV_PW", "prov-pw")
	provDef := bmcDefaults{User: "prov", Password: inventory.SecretRef{Env: "PROV_PW"}, CipherSuites: []int{3}}
	tests := []struct {
		name     string
		mutate   func(*serverResourceModel)
		def      bmcDefaults
		wo       types.String
		user, pw string
		suites   []int
		errPath  path.Path
	}{
		{name: "provider defaults", def: provDef, wo: types.StringNull(), user: "prov", pw: "prov-pw", suites: []int{3}},
		{name: "resource reference wins", def: provDef, wo: types.StringNull(), user: "admin", pw: "res-pw", suites: []int{17, 3},
			mutate: func(m *serverResourceModel) {
				m.User, m.PasswordEnv = types.StringValue("admin"), types.StringValue("RES_PW")
				m.CipherSuites = types.ListValueMust(types.Int64Type, []attrValue{types.Int64Value(17), types.Int64Value(3)})
			}},
		{name: "write-only wins", def: provDef, wo: types.StringValue("wo-pw"), user: "prov", pw: "wo-pw", suites: []int{3},
			mutate: func(m *serverResourceModel) { m.PasswordEnv = types.StringValue("RES_PW") }},
		{name: "no user", def: bmcDefaults{Password: provDef.Password}, wo: types.StringNull(), errPath: path.Root("user")},
		{name: "no password", def: bmcDefaults{User: "u"}, wo: types.StringNull(), errPath: path.Root("password_env")},
		{name: "unset variable", def: bmcDefaults{User: "u"}, wo: types.StringNull(), errPath: path.Root("password_env"),
			mutate: func(m *serverResourceModel) { m.PasswordEnv = types.StringValue("TRICENTER_TEST_UNSET_PW") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := baseModel()
			if tt.mutate != nil {
				tt.mutate(&m)
			}
			got, diags := target(m, tt.def, tt.wo)
			if tt.errPath.String() != "" || len(tt.errPath.Steps()) > 0 {
				if !diags.HasError() {
					t.Fatalf("no error, target %v", got)
				}
				d := diags.Errors()[0].(interface{ Path() path.Path })
				if !d.Path().Equal(tt.errPath) {
					t.Errorf("error on %s, want %s: %v", d.Path(), tt.errPath, diags)
				}
				for _, d := range diags {
					if strings.Contains(d.Detail(), "prov-pw") || strings.Contains(d.Detail(), "res-pw") {
						t.Errorf("a diagnostic shows a password: %s", d.Detail())
					}
				}
				return
			}
			if diags.HasError() {
				t.Fatal(diags)
			}
			if got.User != tt.user || got.Password != tt.pw || fmt.Sprint(got.CipherSuites) != fmt.Sprint(tt.suites) || got.Server != "s1" {
				t.Errorf("target = %s user %s suites %v (password ok: %v)", got, got.User, got.CipherSuites, got.Password == tt.pw)
			}
		})
	}
}

func TestCheckCredentials(t *testing.T) {
	m := baseModel()
	m.Password = types.StringValue("wo")
	m.User = types.StringValue("admin")
	diags := checkCredentials(m, bmcDefaults{})
	if !diags.HasError() || !strings.Contains(diags.Errors()[0].Detail(), "write-only") {
		t.Fatalf("write-only password without a reference: %v", diags)
	}
	if d := checkCredentials(m, bmcDefaults{Password: inventory.SecretRef{Env: "X"}}); d.HasError() {
		t.Fatalf("a provider reference is enough: %v", d)
	}
	m.PasswordFile = types.StringValue("/run/secrets/bmc")
	if d := checkCredentials(m, bmcDefaults{}); d.HasError() {
		t.Fatalf("a resource reference is enough: %v", d)
	}
}

// startServerSim starts one ipmi_sim on the package's lab block with a
// FRU and powered off; the password is exported as TRICENTER_TEST_BMC_PW.
func startServerSim(t *testing.T, idx int) *ipmisim.BMC {
	t.Helper()
	return startServerSims(t, []string{"tfsrv1"}, idx)[0]
}

// startServerSims starts one ipmi_sim per name at consecutive lab
// indices from idx, each with a FRU whose serial is "SN-" + name.
func startServerSims(t *testing.T, names []string, idx int) []*ipmisim.BMC {
	t.Helper()
	testenv.Need(t, ipmisim.Available())
	testenv.RequireBinary(t, "ipmitool")
	idxs := make([]int, len(names))
	for i := range names {
		idxs[i] = idx + i
	}
	addrs, closeAddrs, err := ipmisim.LabAddrs(context.Background(), idxs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeAddrs(); err != nil {
			t.Error(err)
		}
	})
	const pw = "prov-s3cret"
	dir := t.TempDir()
	cfgs := make([]ipmisim.Config, len(names))
	for i, name := range names {
		cfgs[i] = ipmisim.Config{
			Name: name, Address: addrs[i], User: "admin", Password: pw, Dir: dir,
			FRU: &ipmisim.FRU{Manufacturer: "Tricenter Lab", Product: "TL-1000 Server", Serial: "SN-" + name, PartNumber: "P-1"},
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bmcs, err := ipmisim.StartAll(ctx, cfgs, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipmisim.StopAll(bmcs) })
	t.Setenv("TRICENTER_TEST_BMC_PW", pw)
	return bmcs
}

const testProviderBlock = `provider "tricenter" {
  bmc = {
    user          = "admin"
    password_env  = "TRICENTER_TEST_BMC_PW"
    cipher_suites = [3]
    min_interval  = "0s"
    retry_budget  = "2s"
  }
}
`

func serverConfig(addr, power string) string {
	return testProviderBlock + fmt.Sprintf(`
resource "tricenter_server" "s1" {
  name         = "tfsrv1"
  address      = %q
  password_env = "TRICENTER_TEST_BMC_PW"
  power_state  = %q
  boot_device  = "pxe"
}
`, addr, power)
}

// simPower is a check that the simulated machine (not only the state) is
// in the wanted power state.
func simPower(b *ipmisim.BMC, want bool) acc.TestCheckFunc {
	return func(*terraform.State) error {
		on, err := b.PoweredOn()
		if err != nil {
			return err
		}
		if on != want {
			return fmt.Errorf("ipmi_sim %s: powered on = %v, want %v", b.Name(), on, want)
		}
		return nil
	}
}

// TestAccServerResource drives tricenter_server against a real ipmi_sim:
// create (power on, PXE), import, power off, power changed with ipmitool
// behind Terraform's back (the next plan is not empty, the next apply
// converges), and a BMC that stops answering during refresh.
func TestAccServerResource(t *testing.T) {
	testAccPreCheck(t)
	b := startServerSim(t, labIdxServer)
	addr := b.Address().String()
	const res = "tricenter_server.s1"
	acc.Test(t, acc.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []acc.TestStep{
			{
				Config: serverConfig(addr, "on"),
				Check: acc.ComposeAggregateTestCheckFunc(
					acc.TestCheckResourceAttr(res, "id", addr+":623"),
					acc.TestCheckResourceAttr(res, "power_state", "on"),
					acc.TestCheckResourceAttr(res, "observed_power_state", "on"),
					acc.TestCheckResourceAttr(res, "fru_serial", "SN-tfsrv1"),
					acc.TestCheckResourceAttr(res, "fru_model", "TL-1000 Server"),
					acc.TestCheckResourceAttr(res, "fru_manufacturer", "Tricenter Lab"),
					acc.TestCheckResourceAttr(res, "power_off_on_destroy", "false"),
					acc.TestCheckNoResourceAttr(res, "password"),
					simPower(b, true),
					func(*terraform.State) error {
						dev, err := b.BootDevice()
						if err != nil {
							return err
						}
						if dev != "pxe" {
							return fmt.Errorf("ipmi_sim boot device = %q, want pxe", dev)
						}
						return nil
					},
				),
			},
			{
				ResourceName:      res,
				ImportState:       true,
				ImportStateId:     addr,
				ImportStateVerify: true,
				// Arguments that only configuration holds: the reference,
				// the one-time boot device and the display name.
				ImportStateVerifyIgnore: []string{"password_env", "boot_device", "name", "observed_boot_device"},
			},
			{
				Config: serverConfig(addr, "off"),
				Check: acc.ComposeAggregateTestCheckFunc(
					acc.TestCheckResourceAttr(res, "power_state", "off"),
					acc.TestCheckResourceAttr(res, "observed_power_state", "off"),
					simPower(b, false),
				),
			},
			{
				// Powered on with ipmitool behind Terraform's back: the
				// plan's refresh sees it and plans an update back to off.
				PreConfig: func() {
					if _, err := b.Ipmitool(context.Background(), "chassis", "power", "on"); err != nil {
						t.Fatal(err)
					}
				},
				Config: serverConfig(addr, "off"),
				ConfigPlanChecks: acc.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(res, tfjsonpath.New("power_state"), knownvalue.StringExact("off")),
					},
				},
				Check: acc.ComposeAggregateTestCheckFunc(
					acc.TestCheckResourceAttr(res, "observed_power_state", "off"),
					simPower(b, false),
				),
			},
			{
				// The same drift, as a plan only: not empty.
				PreConfig: func() {
					if _, err := b.Ipmitool(context.Background(), "chassis", "power", "on"); err != nil {
						t.Fatal(err)
					}
				},
				Config:             serverConfig(addr, "off"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config: serverConfig(addr, "off"),
				Check:  simPower(b, false),
			},
			{
				PreConfig: func() {
					if err := b.Stop(); err != nil {
						t.Fatal(err)
					}
				},
				RefreshState: true,
				Check: acc.ComposeAggregateTestCheckFunc(
					acc.TestCheckResourceAttr(res, "id", addr+":623"),
					acc.TestCheckResourceAttr(res, "power_state", "off"),
					acc.TestCheckResourceAttr(res, "fru_serial", "SN-tfsrv1"),
				),
			},
			{
				Config:   serverConfig(addr, "off"),
				PlanOnly: true,
			},
		},
	})
}

// TestServerReadUnreachableWarns calls Read against a lab address where
// no BMC listens: a warning, no error, and the state is kept as it was.
func TestServerReadUnreachableWarns(t *testing.T) {
	testenv.Need(t, ipmisim.LabAvailable())
	addrs, closeAddrs, err := ipmisim.LabAddrs(context.Background(), labIdxUnreachable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeAddrs() })
	t.Setenv("TRICENTER_TEST_BMC_PW", "pw")
	ctx := context.Background()
	r := &serverResource{data: &providerData{Concurrency: 1, sem: make(chan struct{}, 1), BMC: bmcDefaults{
		User: "admin", CipherSuites: []int{3},
		Options: bmc.Options{MinInterval: -1, RetryBudget: -1, ExchangeTimeout: 200 * time.Millisecond, ExchangeRetries: -1},
	}}}
	var sr resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sr)
	m := baseModel()
	m.ID = types.StringValue(addrs[0].String() + ":623")
	m.Address = types.StringValue(addrs[0].String())
	m.PasswordEnv = types.StringValue("TRICENTER_TEST_BMC_PW")
	m.PowerState, m.ObservedPowerState = types.StringValue("on"), types.StringValue("on")
	m.ObservedBootDevice = types.StringNull()
	m.BootDevice = types.StringNull()
	m.BootPersistent, m.PowerOffOnDestroy = types.BoolValue(false), types.BoolValue(false)
	m.FRUSerial, m.FRUModel, m.FRUManufacturer = types.StringValue("SN-1"), types.StringValue("M"), types.StringValue("V")
	m.Timeouts.Object = types.ObjectNull(map[string]attrType{"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType})
	state := tfsdk.State{Schema: sr.Schema, Raw: tftypes.NewValue(sr.Schema.Type().TerraformType(ctx), nil)}
	if diags := state.Set(ctx, &m); diags.HasError() {
		t.Fatal(diags)
	}
	resp := resource.ReadResponse{State: state}
	start := time.Now()
	r.Read(ctx, resource.ReadRequest{State: state}, &resp)
	if resp.Diagnostics.HasError() {
		t.Fatalf("Read failed instead of warning: %v", resp.Diagnostics)
	}
	if len(resp.Diagnostics.Warnings()) != 1 || !regexp.MustCompile(`unreachable|did not answer`).MatchString(resp.Diagnostics.Warnings()[0].Detail()) {
		t.Fatalf("warnings = %v", resp.Diagnostics.Warnings())
	}
	if resp.State.Raw.IsNull() || !resp.State.Raw.Equal(state.Raw) {
		t.Fatalf("state changed or removed: %v", resp.State.Raw)
	}
	t.Logf("Read of an unreachable BMC returned after %s: %s", time.Since(start).Round(time.Millisecond), resp.Diagnostics.Warnings()[0].Detail())
}

type (
	attrValue = attr.Value
	attrType  = attr.Type
)

// TestAccServerWriteOnlyPassword creates a server with the write-only
// password (refresh uses the provider's reference), checks that the
// password is nowhere in state, and that destroy with
// power_off_on_destroy powers the machine off. A write-only password
// without any reference for refresh is refused at plan time.
func TestAccServerWriteOnlyPassword(t *testing.T) {
	testAccPreCheck(t)
	b := startServerSim(t, labIdxServer+1)
	t.Setenv(EnvBMCPassword, "")
	t.Setenv(EnvBMCPasswordFile, "")
	addr := b.Address().String()
	const pw = "prov-s3cret"
	const res = "tricenter_server.wo"
	cfg := func(provider string) string {
		return provider + fmt.Sprintf(`
resource "tricenter_server" "wo" {
  address              = %q
  user                 = "admin"
  password             = %q
  power_state          = "on"
  power_off_on_destroy = true
  timeouts {
    create = "1m"
  }
}
`, addr, pw)
	}
	acc.Test(t, acc.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             simPower(b, false),
		Steps: []acc.TestStep{
			{
				Config:      cfg(`provider "tricenter" {}`),
				ExpectError: regexp.MustCompile(`No password reference for refresh`),
			},
			{
				Config: cfg(testProviderBlock),
				Check: acc.ComposeAggregateTestCheckFunc(
					acc.TestCheckResourceAttr(res, "observed_power_state", "on"),
					acc.TestCheckResourceAttr(res, "name", addr),
					acc.TestCheckNoResourceAttr(res, "password"),
					simPower(b, true),
					func(s *terraform.State) error {
						for _, m := range s.Modules {
							for name, r := range m.Resources {
								for k, v := range r.Primary.Attributes {
									if strings.Contains(v, pw) {
										return fmt.Errorf("%s.%s holds the password", name, k)
									}
								}
							}
						}
						return nil
					},
				),
			},
		},
	})
}

// FuzzParseImportID: any input either fails or gives an endpoint that
// parses back to the same address and port.
func FuzzParseImportID(f *testing.F) {
	for _, s := range []string{"198.18.0.10", "admin@198.18.0.10:623", "[2001:db8::1]:6230", "a@b@c", ":623", "[]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		_, host, port, err := parseImportID(id)
		if err != nil {
			return
		}
		if host == "" || port < 1 || port > 65535 {
			t.Fatalf("%q gave host %q port %d", id, host, port)
		}
		_, h2, p2, err := parseImportID(endpointID(host, port))
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("%q: endpoint %q parses to %q %d (%v)", id, endpointID(host, port), h2, p2, err)
		}
	})
}

// TestAccInventoryDrivesServers is the flow of the examples, run the way
// a user runs it: the provider binary is built and loaded through a
// dev_overrides CLI configuration (as docs/index.md describes), and the
// inventory data source's servers map drives one tricenter_server per
// server with for_each (which terraform-plugin-testing's state checks do
// not support), against three ipmi_sim BMCs named in the inventory. It
// applies, checks that the next plan is empty, powers one machine off with
// ipmitool and expects the next plan to show it, then destroys.
func TestAccInventoryDrivesServers(t *testing.T) {
	testAccPreCheck(t)
	testenv.RequireBinary(t, "go")
	names := []string{"s1", "s2", "s3"}
	bmcs := startServerSims(t, names, labIdxServer+2)
	doc := validInline
	for i, b := range bmcs {
		old := fmt.Sprintf("{name: %s, roles:", names[i])
		line := doc[strings.Index(doc, old):]
		line = line[:strings.Index(line, "\n")]
		bmcPart := fmt.Sprintf(", bmc: {address: %s, user: admin, password: {env: TRICENTER_TEST_BMC_PW}, cipherSuites: [3]}}", b.Address())
		newLine := strings.TrimSuffix(line, "}") + bmcPart
		if i := strings.Index(line, ", bmc:"); i >= 0 {
			newLine = line[:i] + bmcPart
		}
		doc = strings.Replace(doc, line, newLine, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, work := t.TempDir(), t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "terraform-provider-tricenter"), "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the provider: %v\n%s", err, out)
	}
	rc := filepath.Join(work, "dev.tfrc")
	writeTestFile(t, rc, fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"tricenter/tricenter\" = %q\n  }\n  direct {}\n}\n", bin))
	writeTestFile(t, filepath.Join(work, "inventory.yaml"), doc)
	writeTestFile(t, filepath.Join(work, "main.tf"), `terraform {
  required_providers {
    tricenter = { source = "tricenter/tricenter" }
  }
}
`+testProviderBlock+`
data "tricenter_inventory" "lab" {
  path = "${path.module}/inventory.yaml"
}

resource "tricenter_server" "node" {
  for_each = { for name, s in data.tricenter_inventory.lab.servers : name => s if s.bmc != null }

  name          = each.key
  address       = each.value.bmc.address
  port          = each.value.bmc.port
  user          = each.value.bmc.user
  password_env  = each.value.bmc.password_env
  cipher_suites = each.value.bmc.cipher_suites
  power_state   = "on"
}

output "serials" {
  value = { for k, s in tricenter_server.node : k => s.fru_serial }
}
`)
	tf := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, os.Getenv("TF_ACC_TERRAFORM_PATH"), args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("terraform %s: %v", strings.Join(args, " "), err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	start := time.Now()
	if out, code := tf("apply", "-auto-approve", "-input=false", "-no-color"); code != 0 {
		t.Fatalf("terraform apply exited %d:\n%s", code, out)
	}
	t.Logf("apply of 3 servers: %s", time.Since(start).Round(time.Millisecond))
	for _, b := range bmcs {
		if err := simPower(b, true)(nil); err != nil {
			t.Error(err)
		}
	}
	out, code := tf("output", "-json", "serials")
	var serials map[string]string
	if err := json.Unmarshal([]byte(out), &serials); code != 0 || err != nil {
		t.Fatalf("terraform output exited %d (%v):\n%s", code, err, out)
	}
	for _, n := range names {
		if serials[n] != "SN-"+n {
			t.Errorf("serial of %s = %q, want SN-%s", n, serials[n], n)
		}
	}
	if out, code := tf("plan", "-detailed-exitcode", "-input=false", "-no-color"); code != 0 {
		t.Fatalf("plan after apply exited %d, want 0 (no changes):\n%s", code, out)
	}
	if _, err := bmcs[1].Ipmitool(ctx, "chassis", "power", "off"); err != nil {
		t.Fatal(err)
	}
	out, code = tf("plan", "-detailed-exitcode", "-input=false", "-no-color")
	if code != 2 || !strings.Contains(out, `tricenter_server.node["s2"] will be updated`) || !strings.Contains(out, `"off" -> "on"`) {
		t.Fatalf("plan after powering s2 off exited %d, want 2 with s2 updated off -> on:\n%s", code, out)
	}
	if out, code := tf("destroy", "-auto-approve", "-input=false", "-no-color"); code != 0 {
		t.Fatalf("terraform destroy exited %d:\n%s", code, out)
	}
	// power_off_on_destroy is false: destroy leaves the machines alone.
	if err := simPower(bmcs[0], true)(nil); err != nil {
		t.Error(err)
	}
}

func writeTestFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
