// Command terraform-provider-tricenter serves the tricenter Terraform provider.
package main

import (
	"context"
	"flag"
	"log"

	fwprovider "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/tricenter/terraform-provider-tricenter/internal/version"
	"github.com/tricenter/terraform-provider-tricenter/provider"
)

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()
	err := providerserver.Serve(context.Background(), newProvider(), providerserver.ServeOpts{
		Address: "registry.terraform.io/tricenter/tricenter",
		Debug:   debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}

// newProvider reports the build's stamp (internal/version) to Terraform:
// the same version the tricenter CLI prints.
func newProvider() func() fwprovider.Provider { return provider.New(version.Version()) }
