// Command geninventory writes a generated three-center inventory, for
// benchmarks and examples: go run ./hack/geninventory -racks 40,40,40 -servers 42 > big.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
)

func main() {
	o := invgen.Default()
	var racks string
	flag.StringVar(&racks, "racks", "3,3,2", "racks in production,local-dr,remote-dr")
	flag.IntVar(&o.ServersPerRack, "servers", o.ServersPerRack, "servers per rack")
	flag.IntVar(&o.TotalServers, "total", 0, "total servers spread over the racks (overrides -servers)")
	flag.BoolVar(&o.Lab, "lab", false, "use 198.18.0.0/15 addresses")
	flag.BoolVar(&o.BMC, "bmc", true, "give every server a BMC")
	flag.Parse()
	if _, err := fmt.Sscanf(racks, "%d,%d,%d", &o.Racks[0], &o.Racks[1], &o.Racks[2]); err != nil {
		fmt.Fprintln(os.Stderr, "-racks: want three numbers such as 40,40,40")
		os.Exit(2)
	}
	enc := yaml.NewEncoder(os.Stdout)
	enc.SetIndent(2)
	if err := enc.Encode(invgen.Generate(o)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
