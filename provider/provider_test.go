package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestProviderMetadataAndSchema(t *testing.T) {
	ctx := context.Background()
	p := New("1.2.3")()
	var md provider.MetadataResponse
	p.Metadata(ctx, provider.MetadataRequest{}, &md)
	if md.TypeName != "tricenter" || md.Version != "1.2.3" {
		t.Fatalf("metadata = %+v, want tricenter 1.2.3", md)
	}
	var sr provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &sr)
	if sr.Diagnostics.HasError() {
		t.Fatalf("schema diagnostics: %v", sr.Diagnostics)
	}
	if d := sr.Schema.ValidateImplementation(ctx); d.HasError() {
		t.Fatalf("provider schema: %v", d)
	}
	if sr.Schema.Description == "" {
		t.Fatal("provider schema has no description")
	}
}

// TestSchemasDescribed checks that every attribute of every object has a
// MarkdownDescription (the generated docs rely on it) and that the
// schemas are valid.
func TestSchemasDescribed(t *testing.T) {
	ctx := context.Background()
	p := New("test")()
	var sr provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &sr)
	for name, a := range sr.Schema.Attributes {
		checkDescribed(t, "provider."+name, a)
	}
	for _, f := range p.Resources(ctx) {
		r := f()
		var md resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: "tricenter"}, &md)
		var rs resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &rs)
		if d := rs.Schema.ValidateImplementation(ctx); d.HasError() {
			t.Errorf("%s: %v", md.TypeName, d)
		}
		if rs.Schema.MarkdownDescription == "" {
			t.Errorf("%s has no description", md.TypeName)
		}
		for name, a := range rs.Schema.Attributes {
			checkDescribed(t, md.TypeName+"."+name, a)
		}
	}
	described = 0
	for _, f := range p.DataSources(ctx) {
		d := f()
		var md datasource.MetadataResponse
		d.Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: "tricenter"}, &md)
		var ds datasource.SchemaResponse
		d.Schema(ctx, datasource.SchemaRequest{}, &ds)
		if diags := ds.Schema.ValidateImplementation(ctx); diags.HasError() {
			t.Errorf("%s: %v", md.TypeName, diags)
		}
		if ds.Schema.MarkdownDescription == "" {
			t.Errorf("%s has no description", md.TypeName)
		}
		for name, a := range ds.Schema.Attributes {
			checkDescribed(t, md.TypeName+"."+name, a)
		}
	}
	// The data sources have well over 80 attributes once nested ones count.
	if described < 80 {
		t.Errorf("only %d data source attributes checked: nested attributes were not visited", described)
	}
}

// described counts the attributes checkDescribed saw.
var described int

type describedAttr interface {
	GetMarkdownDescription() string
}

func checkDescribed(t *testing.T, name string, a any) {
	t.Helper()
	described++
	d, ok := a.(describedAttr)
	if !ok {
		t.Fatalf("%s: %T has no description", name, a)
	}
	if d.GetMarkdownDescription() == "" {
		t.Errorf("%s has no MarkdownDescription", name)
	}
	for k, v := range nestedAttributes(a) {
		checkDescribed(t, name+"."+k, v)
	}
}

// nestedAttributes lists the attributes inside a nested attribute.
func nestedAttributes(a any) map[string]any {
	out := map[string]any{}
	add := func(m any) {
		switch m := m.(type) {
		case map[string]pschema.Attribute:
			for k, v := range m {
				out[k] = v
			}
		case map[string]dschema.Attribute:
			for k, v := range m {
				out[k] = v
			}
		case map[string]rschema.Attribute:
			for k, v := range m {
				out[k] = v
			}
		}
	}
	switch a := a.(type) {
	case pschema.SingleNestedAttribute:
		add(a.Attributes)
	case dschema.SingleNestedAttribute:
		add(a.Attributes)
	case dschema.ListNestedAttribute:
		add(a.NestedObject.Attributes)
	case dschema.MapNestedAttribute:
		add(a.NestedObject.Attributes)
	case rschema.SingleNestedAttribute:
		add(a.Attributes)
	}
	return out
}

func nullProviderModel() providerModel {
	return providerModel{
		ArtifactDir: types.StringNull(), MirrorURL: types.StringNull(), Concurrency: types.Int64Null(),
	}
}

func nullSSH() *sshModel {
	return &sshModel{User: types.StringNull(), PrivateKey: types.StringNull(), PrivateKeyFile: types.StringNull(),
		Agent: types.BoolNull(), KnownHosts: types.ListNull(types.StringType)}
}

func nullBMC() *bmcModel {
	return &bmcModel{User: types.StringNull(), PasswordEnv: types.StringNull(), PasswordFile: types.StringNull(),
		CipherSuites: types.ListNull(types.Int64Type), MinInterval: types.StringNull(), RetryBudget: types.StringNull()}
}

// TestConfigure covers the translation of the provider block with its
// environment fallbacks: configuration wins over the environment, the
// default BMC password is referred to by name, and conflicts are errors on
// the attribute that causes them.
func TestConfigure(t *testing.T) {
	tests := []struct {
		name    string
		model   func() providerModel
		env     map[string]string
		check   func(t *testing.T, d *providerData)
		errPath path.Path
		errText string
	}{
		{
			name:  "defaults",
			model: nullProviderModel,
			check: func(t *testing.T, d *providerData) {
				if d.Concurrency != DefaultConcurrency || cap(d.sem) != DefaultConcurrency || d.SSH.User != "" || !d.BMC.Password.IsZero() ||
					len(d.BMC.CipherSuites) != len(inventory.DefaultCipherSuites) || d.BMC.Options.MinInterval != 0 {
					t.Errorf("defaults = %+v", d)
				}
			},
		},
		{
			name:  "environment fallbacks",
			model: nullProviderModel,
			env: map[string]string{
				EnvSSHUser: "root", EnvSSHPrivateKeyFile: "/k", EnvSSHAgent: "true", EnvSSHKnownHosts: "/a:/b",
				EnvArtifactDir: "/art", EnvConcurrency: "4", EnvBMCUser: "admin", EnvBMCPassword: "secret-pw",
			},
			check: func(t *testing.T, d *providerData) {
				if d.SSH.User != "root" || d.SSH.PrivateKeyFile != "/k" || !d.SSH.Agent || strings.Join(d.SSH.KnownHosts, ",") != "/a,/b" ||
					d.ArtifactDir != "/art" || d.Concurrency != 4 || cap(d.sem) != 4 || d.BMC.User != "admin" {
					t.Errorf("data = %+v", d)
				}
				if d.BMC.Password != (inventory.SecretRef{Env: EnvBMCPassword}) {
					t.Errorf("BMC password = %+v, want a reference to %s", d.BMC.Password, EnvBMCPassword)
				}
			},
		},
		{
			name: "configuration wins",
			model: func() providerModel {
				m := nullProviderModel()
				m.SSH = nullSSH()
				m.SSH.User = types.StringValue("ops")
				m.Concurrency = types.Int64Value(2)
				m.BMC = nullBMC()
				m.BMC.PasswordFile = types.StringValue("/run/bmc.pw")
				m.BMC.CipherSuites = types.ListValueMust(types.Int64Type, []attr.Value{types.Int64Value(3)})
				m.BMC.MinInterval = types.StringValue("0s")
				m.BMC.RetryBudget = types.StringValue("5s")
				return m
			},
			env: map[string]string{EnvSSHUser: "root", EnvConcurrency: "9", EnvBMCPassword: "x"},
			check: func(t *testing.T, d *providerData) {
				if d.SSH.User != "ops" || d.Concurrency != 2 || d.BMC.Password != (inventory.SecretRef{File: "/run/bmc.pw"}) ||
					len(d.BMC.CipherSuites) != 1 || d.BMC.CipherSuites[0] != 3 ||
					d.BMC.Options.MinInterval != -1 || d.BMC.Options.RetryBudget != 5*time.Second {
					t.Errorf("data = %+v", d)
				}
			},
		},
		{
			name:    "artifact dir and mirror",
			model:   nullProviderModel,
			env:     map[string]string{EnvArtifactDir: "/a", EnvMirrorURL: "http://198.18.0.5/"},
			errPath: path.Root("artifact_dir"), errText: "keep one",
		},
		{
			name:    "bad mirror",
			model:   nullProviderModel,
			env:     map[string]string{EnvMirrorURL: "ftp://x"},
			errPath: path.Root("mirror_url"), errText: "http://",
		},
		{
			name:    "bad concurrency",
			model:   nullProviderModel,
			env:     map[string]string{EnvConcurrency: "lots"},
			errPath: path.Root("concurrency"), errText: EnvConcurrency,
		},
		{
			name:    "bad agent",
			model:   nullProviderModel,
			env:     map[string]string{EnvSSHAgent: "maybe"},
			errPath: path.Root("ssh").AtName("agent"), errText: "true or false",
		},
		{
			name:    "two keys",
			model:   nullProviderModel,
			env:     map[string]string{EnvSSHPrivateKey: "-----BEGIN KEY-----", EnvSSHPrivateKeyFile: "/k"},
			errPath: path.Root("ssh").AtName("private_key"), errText: "keep one",
		},
		{
			name: "unknown value",
			model: func() providerModel {
				m := nullProviderModel()
				m.ArtifactDir = types.StringUnknown()
				return m
			},
			errPath: path.Root("artifact_dir"), errText: "known at plan time",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			d, diags := configure(context.Background(), tt.model(), getenv)
			if len(tt.errPath.Steps()) > 0 {
				if !diags.HasError() {
					t.Fatalf("no error: %+v", d)
				}
				e := diags.Errors()[0]
				wp, ok := e.(interface{ Path() path.Path })
				if !ok || !wp.Path().Equal(tt.errPath) || !strings.Contains(e.Detail(), tt.errText) {
					t.Errorf("error %q %q, want on %s with %q", e.Summary(), e.Detail(), tt.errPath, tt.errText)
				}
				for _, v := range tt.env {
					if strings.HasPrefix(v, "-----BEGIN") && strings.Contains(e.Detail(), v) {
						t.Errorf("the key reached a diagnostic")
					}
				}
				return
			}
			if diags.HasError() {
				t.Fatal(diags)
			}
			tt.check(t, d)
		})
	}
}
