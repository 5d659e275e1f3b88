package inventory_test

import (
	"os"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// FuzzLoadValidate: no input makes loading, validation or planning panic,
// and a plan is only built for an inventory Validate accepts.
func FuzzLoadValidate(f *testing.F) {
	for _, p := range []string{"../examples/inventory/three-center.yaml", "../examples/inventory/lab.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(minimal))
	f.Add([]byte("apiVersion: tricenter.io/v1alpha1\nkind: Cluster\nspec: {racks: [{servers: [{}]}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, lines, err := inventory.Parse(data)
		if err != nil {
			return
		}
		res := c.Validate(lines)
		p, err := inventory.BuildPlan(c, lines, nil)
		if res.OK() != (err == nil) {
			t.Fatalf("Validate OK=%v but BuildPlan err=%v", res.OK(), err)
		}
		if err == nil && len(p.Etcd.Members) != p.Etcd.Count {
			t.Fatalf("plan has %d members, count %d", len(p.Etcd.Members), p.Etcd.Count)
		}
	})
}
