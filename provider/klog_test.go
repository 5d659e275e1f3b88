package provider

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-log/tflogtest"
	"k8s.io/klog/v2"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
	"github.com/tricenter/terraform-provider-tricenter/internal/logging/klogtest"
)

// TestConfigureRoutesKlog: once the provider is configured, what client-go
// logs through klog (here its own warning when it has neither a kubeconfig
// nor a master) reaches tflog as a record, not klog's line on stderr.
func TestConfigureRoutesKlog(t *testing.T) {
	t.Cleanup(func() { logging.RouteKlog(nil) })
	var out bytes.Buffer
	ctx := tflogtest.RootLogger(context.Background(), &out)

	p := New("test")()
	var sresp provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &sresp)
	st := tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)}
	if diags := st.Set(ctx, nullProviderModel()); diags.HasError() {
		t.Fatal(diags)
	}
	var resp provider.ConfigureResponse
	p.Configure(ctx, provider.ConfigureRequest{Config: tfsdk.Config{Schema: sresp.Schema, Raw: st.Raw}}, &resp)
	if resp.Diagnostics.HasError() {
		t.Fatal(resp.Diagnostics)
	}

	klogtest.ClientGoWarns(t)
	klog.InfoS("Watching nodes", "node", "dc1-r01-w01")
	entries, err := tflogtest.MultilineJSONDecode(&out)
	if err != nil {
		t.Fatal(err)
	}
	var warned, structured bool
	for _, e := range entries {
		msg, _ := e["@message"].(string)
		if strings.HasPrefix(msg, klogtest.ClientGoWarning) && e["@level"] == "info" {
			warned = true
		}
		if msg == "Watching nodes" && e["node"] == "dc1-r01-w01" {
			structured = true
		}
	}
	if !warned || !structured {
		t.Fatalf("client-go's klog records did not reach tflog (warning %v, structured %v):\n%s", warned, structured, out.String())
	}
}
