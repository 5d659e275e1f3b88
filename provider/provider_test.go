package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/provider"
)

func TestProviderMetadataAndSchema(t *testing.T) {
	p := New("1.2.3")()
	var md provider.MetadataResponse
	p.Metadata(context.Background(), provider.MetadataRequest{}, &md)
	if md.TypeName != "tricenter" || md.Version != "1.2.3" {
		t.Fatalf("metadata = %+v, want tricenter 1.2.3", md)
	}
	var sr provider.SchemaResponse
	p.Schema(context.Background(), provider.SchemaRequest{}, &sr)
	if sr.Diagnostics.HasError() {
		t.Fatalf("schema diagnostics: %v", sr.Diagnostics)
	}
	if sr.Schema.Description == "" {
		t.Fatal("provider schema has no description")
	}
}
