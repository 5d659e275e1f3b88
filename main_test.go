package main

import (
	"context"
	"testing"

	fwprovider "github.com/hashicorp/terraform-plugin-framework/provider"

	"github.com/tricenter/terraform-provider-tricenter/internal/version"
)

// TestProviderVersion: the provider reports internal/version's value to
// Terraform (the stamp the CLI prints), not a constant of its own.
func TestProviderVersion(t *testing.T) {
	var resp fwprovider.MetadataResponse
	newProvider()().Metadata(context.Background(), fwprovider.MetadataRequest{}, &resp)
	if resp.Version == "" || resp.Version != version.Version() {
		t.Fatalf("provider reports version %q, internal/version says %q", resp.Version, version.Version())
	}
	if resp.TypeName != "tricenter" {
		t.Fatalf("type name %q", resp.TypeName)
	}
}
