package provider

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

func TestPlaceServers(t *testing.T) {
	file := examplePath("three-center.yaml")
	_, full := loadPlan(t, file)
	tests := []struct {
		name       string
		servers    []string
		allow      bool
		members    int
		centerLoss map[string]bool
		siteLoss   map[string]bool
		errPath    path.Path
		errText    string
	}{
		{name: "whole inventory", members: full.Etcd.Count,
			centerLoss: map[string]bool{"dc1": true, "dc2": true, "dc3": true}, siteLoss: map[string]bool{"site-a": false, "site-b": true}},
		{name: "one per center", servers: []string{"dc1-r01-s01", "dc2-r01-s01", "dc3-r01-s01"}, members: 3,
			centerLoss: map[string]bool{"dc1": true, "dc2": true, "dc3": true}, siteLoss: map[string]bool{"site-a": false, "site-b": true}},
		{name: "no remote center refused", servers: []string{"dc1-r01-s01", "dc1-r02-s01", "dc2-r01-s01"},
			errPath: path.Root("servers"), errText: "spec."},
		{name: "no remote center reported", servers: []string{"dc1-r01-s01", "dc1-r02-s01", "dc2-r01-s01"}, allow: true, members: 3,
			centerLoss: map[string]bool{"dc3": true}},
		{name: "unknown server", servers: []string{"dc1-r01-s01", "nope"}, errPath: path.Root("servers"), errText: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := placeServers(fileSource(file), tt.servers, tt.allow)
			if len(tt.errPath.Steps()) > 0 {
				if !diags.HasError() {
					t.Fatalf("no error; members %v", p.Etcd.Members)
				}
				e := diags.Errors()[0]
				wp, ok := e.(interface{ Path() path.Path })
				if !ok || !wp.Path().Equal(tt.errPath) || !strings.Contains(e.Detail(), tt.errText) {
					t.Fatalf("error %q %q, want on %s with %q", e.Summary(), e.Detail(), tt.errPath, tt.errText)
				}
				return
			}
			if diags.HasError() {
				t.Fatal(diags)
			}
			if p.Etcd.Count != tt.members {
				t.Errorf("%d members, want %d", p.Etcd.Count, tt.members)
			}
			if tt.servers == nil {
				got, _ := json.Marshal(p.Etcd)
				want, _ := json.Marshal(full.Etcd)
				if string(got) != string(want) {
					t.Errorf("placement differs from inventory.BuildPlan:\n got %s\nwant %s", got, want)
				}
			}
			for _, m := range p.Etcd.Members {
				if tt.servers != nil && !contains(tt.servers, m.Name) {
					t.Errorf("member %s is not among %v", m.Name, tt.servers)
				}
			}
			m := placementModel(p)
			for k, v := range tt.centerLoss {
				if m.CenterLoss[k] != v {
					t.Errorf("center_loss[%s] = %v, want %v", k, m.CenterLoss[k], v)
				}
			}
			for k, v := range tt.siteLoss {
				if m.SiteLoss[k] != v {
					t.Errorf("site_loss[%s] = %v, want %v", k, m.SiteLoss[k], v)
				}
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestAccEtcdPlacementDataSource(t *testing.T) {
	testAccPreCheck(t)
	file, err := filepath.Abs(examplePath("three-center.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, full := loadPlan(t, file)
	const ds = "data.tricenter_etcd_placement.x"
	checks := []resource.TestCheckFunc{
		resource.TestCheckResourceAttr(ds, "etcd.count", strconv.Itoa(full.Etcd.Count)),
		resource.TestCheckResourceAttr(ds, "etcd.quorum", strconv.Itoa(full.Etcd.Quorum)),
		resource.TestCheckResourceAttr(ds, "etcd.survives_center_loss", strconv.FormatBool(full.Etcd.SurvivesCenterLoss)),
		resource.TestCheckResourceAttr(ds, "etcd.failure_domains.#", strconv.Itoa(len(full.Etcd.FailureDomains))),
	}
	for i, m := range full.Etcd.Members {
		checks = append(checks, resource.TestCheckResourceAttr(ds, fmt.Sprintf("etcd.members.%d.name", i), m.Name))
	}
	for _, fd := range full.Etcd.FailureDomains {
		if fd.Kind == "center" {
			checks = append(checks, resource.TestCheckResourceAttr(ds, "center_loss."+fd.Name, strconv.FormatBool(fd.QuorumKept)))
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		// Invalid configurations first: the destroy after the last step
		// runs with the last configuration.
		Steps: []resource.TestStep{
			{
				Config: fmt.Sprintf(`data "tricenter_etcd_placement" "x" {
  path    = %q
  servers = ["dc1-r01-s01", "dc1-r02-s01", "dc2-r01-s01"]
}`, file),
				ExpectError: regexp.MustCompile(`Invalid inventory`),
			},
			{
				Config:      `data "tricenter_etcd_placement" "x" {}`,
				ExpectError: regexp.MustCompile(`(?s)Invalid Attribute Combination.*path`),
			},
			{
				Config: fmt.Sprintf(`data "tricenter_etcd_placement" "x" { path = %q }`, file),
				Check:  resource.ComposeAggregateTestCheckFunc(checks...),
			},
			{
				Config: fmt.Sprintf(`data "tricenter_etcd_placement" "x" {
  path    = %q
  servers = ["dc1-r01-s01", "dc2-r01-s01", "dc3-r01-s01"]
}`, file),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(ds, "etcd.count", "3"),
					resource.TestCheckResourceAttr(ds, "center_loss.dc1", "true"),
					resource.TestCheckResourceAttr(ds, "center_loss.dc3", "true"),
					resource.TestCheckResourceAttr(ds, "site_loss.site-a", "false"),
				),
			},
		},
	})
}

// TestAccExamples plans the data source examples of the docs, so that the
// HCL users copy is known to work: the inventory paths point at
// examples/inventory.
func TestAccExamples(t *testing.T) {
	testAccPreCheck(t)
	dir, err := filepath.Abs(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range []string{"tricenter_inventory", "tricenter_etcd_placement"} {
		t.Run(ex, func(t *testing.T) {
			b, err := readFile(filepath.Join(dir, "data-sources", ex, "data-source.tf"))
			if err != nil {
				t.Fatal(err)
			}
			cfg := strings.ReplaceAll(b, "${path.module}/../../inventory/", dir+"/inventory/")
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:             cfg,
					PlanOnly:           true,
					ExpectNonEmptyPlan: true,
				}},
			})
		})
	}
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}
