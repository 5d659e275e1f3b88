package inventory_test

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// BenchmarkPlan5000 parses, validates, allocates and places a 5,000-server,
// 120-rack inventory.
func BenchmarkPlan5000(b *testing.B) {
	o := invgen.Default()
	o.Racks = [3]int{40, 40, 40}
	o.TotalServers = 5000
	doc, err := yaml.Marshal(invgen.Generate(o))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ResetTimer()
	for b.Loop() {
		c, lines, err := inventory.Parse(doc)
		if err != nil {
			b.Fatal(err)
		}
		p, err := inventory.BuildPlan(c, lines, nil)
		if err != nil {
			b.Fatal(err)
		}
		if p.Summary.Servers != 5000 {
			b.Fatalf("%d servers", p.Summary.Servers)
		}
	}
}
