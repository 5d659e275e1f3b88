package provider

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var exampleInventories = []string{"lab.yaml", "three-center.yaml"}

func examplePath(name string) string { return filepath.Join("..", "examples", "inventory", name) }

// loadPlan computes what `tricenter plan` computes for a first apply.
func loadPlan(t *testing.T, file string) (*inventory.Cluster, *inventory.Plan) {
	t.Helper()
	c, lines, err := inventory.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := inventory.BuildPlan(c, lines, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

func fileSource(file string) inventorySource {
	return inventorySource{pathValue: types.StringValue(file), yamlValue: types.StringNull(), attr: path.Root("path"), name: file}
}

func yamlSource(doc string) inventorySource {
	return inventorySource{pathValue: types.StringNull(), yamlValue: types.StringValue(doc), attr: path.Root("yaml"), name: "the inline inventory"}
}

// TestInventoryModelMatchesPlan checks the translation of every example
// inventory against the inventory package's own plan.
func TestInventoryModelMatchesPlan(t *testing.T) {
	for _, name := range exampleInventories {
		t.Run(name, func(t *testing.T) {
			c, p := loadPlan(t, examplePath(name))
			_, got, diags := planInventory(fileSource(examplePath(name)))
			if diags.HasError() {
				t.Fatalf("diagnostics: %v", diags)
			}
			m, err := inventoryModel(c, got)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(p)
			if m.PlanJSON != string(want) {
				t.Errorf("plan_json differs from inventory.BuildPlan:\n got %s\nwant %s", m.PlanJSON, want)
			}
			if len(m.Servers) != p.Summary.Servers {
				t.Errorf("servers has %d entries, the plan %d", len(m.Servers), p.Summary.Servers)
			}
			for _, ctr := range p.Centers {
				for _, r := range ctr.Racks {
					for _, n := range r.Servers {
						s, ok := m.Servers[n.Name]
						if !ok {
							t.Errorf("server %s missing", n.Name)
							continue
						}
						if s.Center != ctr.Name || s.Site != ctr.Site || s.Rack != r.Name || s.PodCIDR != n.PodCIDR ||
							s.Address != n.Address || s.Etcd != n.Etcd || s.ControlPlane != n.ControlPlane {
							t.Errorf("server %s = %+v, plan says center %s site %s rack %s pod %s etcd %v cp %v",
								n.Name, s, ctr.Name, ctr.Site, r.Name, n.PodCIDR, n.Etcd, n.ControlPlane)
						}
					}
				}
			}
			if m.Etcd.Count != int64(p.Etcd.Count) || m.Etcd.Quorum != int64(p.Etcd.Quorum) || len(m.Etcd.Members) != len(p.Etcd.Members) {
				t.Errorf("etcd = %+v, plan %+v", m.Etcd, p.Etcd)
			}
			for i, mem := range p.Etcd.Members {
				if m.Etcd.Members[i] != (memberModel{mem.Name, mem.Site, mem.Center, mem.Rack, mem.Address}) {
					t.Errorf("etcd member %d = %+v, plan %+v", i, m.Etcd.Members[i], mem)
				}
			}
			if len(m.Etcd.FailureDomains) != len(p.Etcd.FailureDomains) {
				t.Errorf("%d failure domains, plan %d", len(m.Etcd.FailureDomains), len(p.Etcd.FailureDomains))
			}
			if m.IPAM.APIVIP != p.IPAM.APIVIP || m.IPAM.ClusterDNSIP != p.IPAM.ClusterDNSIP || m.IPAM.KubernetesServiceIP != p.IPAM.KubernetesServiceIP {
				t.Errorf("ipam = %+v, plan %+v", m.IPAM, p.IPAM)
			}
			var model inventory.Cluster
			if err := json.Unmarshal([]byte(m.ModelJSON), &model); err != nil {
				t.Fatalf("model_json: %v", err)
			}
			if !reflect.DeepEqual(&model, c) {
				t.Errorf("model_json does not round-trip to the defaulted inventory")
			}
		})
	}
}

const validInline = `apiVersion: tricenter.io/v1alpha1
kind: Cluster
metadata: {name: tiny}
spec:
  sites: [{name: a}, {name: b}]
  centers:
    - {name: c1, site: a, role: production, rttMs: {c2: 1, c3: 10}}
    - {name: c2, site: a, role: local-dr, rttMs: {c1: 1, c3: 10}}
    - {name: c3, site: b, role: remote-dr, rttMs: {c1: 10, c2: 10}}
  network: {podCIDR: 198.19.0.0/16, serviceCIDR: 198.18.200.0/24, loadBalancerPool: [198.18.201.0/28]}
  ssh: {agent: true}
  racks:
    - name: r1
      center: c1
      subnet: 198.18.64.0/24
      tor: {name: t1, asn: 65100, address: 198.18.64.1}
      servers:
        - {name: s1, roles: [etcd], ssh: {address: 198.18.64.10}, bmc: {address: 198.18.128.10, user: admin, password: {env: BMC_PW}}}
    - name: r2
      center: c2
      subnet: 198.18.65.0/24
      tor: {name: t2, asn: 65101, address: 198.18.65.1}
      servers:
        - {name: s2, roles: [etcd], ssh: {address: 198.18.65.10}}
    - name: r3
      center: c3
      subnet: 198.18.66.0/24
      tor: {name: t3, asn: 65102, address: 198.18.66.1}
      servers:
        - {name: s3, roles: [etcd, worker], ssh: {address: 198.18.66.10}}
`

// TestInventoryProblems checks that parse and validation problems become
// diagnostics on the source attribute naming the field and the line.
func TestInventoryProblems(t *testing.T) {
	if _, _, diags := planInventory(yamlSource(validInline)); diags.HasError() {
		t.Fatalf("the valid inline inventory fails: %v", diags)
	}
	tests := []struct {
		name, old, new string
		summary        string // substring of an error summary
		detail         string // substring of its detail
	}{
		{"bad address", "address: 198.18.65.10}", "address: 198.18.65.300}", "spec.racks[1].servers[0].ssh.address", "line 24"},
		{"unknown field", "subnet: 198.18.66.0/24", "subnet: 198.18.66.0/24\n      colour: red", "Cannot read the inventory", "line 28: unknown field colour"},
		{"unknown center", "center: c3", "center: c9", "spec.racks[2].center", "line 26"},
		{"wrong apiVersion", "tricenter.io/v1alpha1", "tricenter.io/v9", "Cannot read the inventory", "apiVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(validInline, tt.old, tt.new, 1)
			if doc == validInline {
				t.Fatalf("%q not in the inline inventory", tt.old)
			}
			_, _, diags := planInventory(yamlSource(doc))
			if !diags.HasError() {
				t.Fatal("no error")
			}
			var found bool
			for _, d := range diags.Errors() {
				wp, ok := d.(interface{ Path() path.Path })
				if !ok || !wp.Path().Equal(path.Root("yaml")) {
					t.Errorf("diagnostic %q is not on attribute yaml", d.Summary())
				}
				if strings.Contains(d.Summary(), tt.summary) && strings.Contains(d.Detail(), tt.detail) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error with %q in the summary and %q in the detail: %v", tt.summary, tt.detail, diags)
			}
		})
	}
}

func TestAccInventoryDataSource(t *testing.T) {
	testAccPreCheck(t)
	for _, name := range exampleInventories {
		t.Run(name, func(t *testing.T) {
			file, err := filepath.Abs(examplePath(name))
			if err != nil {
				t.Fatal(err)
			}
			c, p := loadPlan(t, file)
			planJSON, _ := json.Marshal(p)
			checks := []resource.TestCheckFunc{
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "cluster_name", c.Metadata.Name),
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "plan_json", string(planJSON)),
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "servers.%", strconv.Itoa(p.Summary.Servers)),
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "etcd.count", strconv.Itoa(p.Etcd.Count)),
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "etcd.quorum", strconv.Itoa(p.Etcd.Quorum)),
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "ipam.api_vip", p.IPAM.APIVIP),
				resource.TestCheckResourceAttr("data.tricenter_inventory.x", "ipam.cluster_dns_ip", p.IPAM.ClusterDNSIP),
			}
			for i, m := range p.Etcd.Members {
				pre := fmt.Sprintf("etcd.members.%d.", i)
				checks = append(checks,
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"name", m.Name),
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"center", m.Center),
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"site", m.Site),
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"rack", m.Rack))
			}
			for _, h := range c.Hosts() {
				pod, _ := p.IPs().PodCIDR(h.Name)
				pre := "servers." + h.Name + "."
				checks = append(checks,
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"pod_cidr", pod.String()),
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"rack", h.Rack.Name),
					resource.TestCheckResourceAttr("data.tricenter_inventory.x", pre+"center", h.Center.Name))
			}
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{
					{
						Config: fmt.Sprintf(`data "tricenter_inventory" "x" { path = %q }
`, file),
						Check: resource.ComposeAggregateTestCheckFunc(checks...),
					},
					{
						// The same document inline gives the same plan.
						Config: fmt.Sprintf(`data "tricenter_inventory" "x" { yaml = file(%q) }`, file),
						Check: resource.ComposeAggregateTestCheckFunc(
							resource.TestCheckResourceAttr("data.tricenter_inventory.x", "plan_json", string(planJSON))),
					},
				},
			})
		})
	}
}

func TestAccInventoryDataSourceInvalid(t *testing.T) {
	testAccPreCheck(t)
	doc := strings.Replace(validInline, "address: 198.18.65.10}", "address: 198.18.65.300}", 1)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{{
			Config:      fmt.Sprintf("data \"tricenter_inventory\" \"x\" {\n  yaml = <<-EOT\n%s\n  EOT\n}\n", doc),
			ExpectError: regexp.MustCompile(`(?s)Invalid inventory: spec.racks\[1\].servers\[0\].ssh.address.*line 24`),
		}},
	})
}
