// Package provider is the tricenter Terraform provider: it translates
// Terraform configuration into inventory types and calls the engine.
package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

var _ provider.Provider = (*tricenterProvider)(nil)

type tricenterProvider struct {
	version string
}

// New returns the provider factory for providerserver.Serve.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &tricenterProvider{version: version} }
}

func (p *tricenterProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "tricenter"
	resp.Version = p.version
}

func (p *tricenterProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Takes bare-metal servers in two sites and three centers from BMC-only to a running, verified Kubernetes cluster.",
	}
}

func (p *tricenterProvider) Configure(context.Context, provider.ConfigureRequest, *provider.ConfigureResponse) {
}

func (p *tricenterProvider) Resources(context.Context) []func() resource.Resource { return nil }

func (p *tricenterProvider) DataSources(context.Context) []func() datasource.DataSource { return nil }
