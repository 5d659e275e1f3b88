package provider

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// clusterStateWithPKI builds the engine state an apply leaves (PKI
// created by the engine, no host involved) and returns the inventory file
// and the encoded state.
func clusterStateWithPKI(t *testing.T) (string, string) {
	t.Helper()
	inv := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(inv, []byte(labInventory(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := parseLab(t, labInventory(t))
	run, err := newEngineRun(context.Background(), engineOptions{Cluster: c, Files: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if _, err := run.eng.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	// What an apply does once the admin group's binding answers (here a
	// fake verification: no API server).
	if _, _, err := run.store.PKI().SwitchAdmin(func(*pki.KeyPair) error { return nil }); err != nil {
		t.Fatal(err)
	}
	enc, err := encodeFiles(run.files())
	if err != nil {
		t.Fatal(err)
	}
	return inv, enc
}

type kubeconfigDoc struct {
	Clusters []struct {
		Cluster struct {
			Server string `json:"server"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Cert string `json:"client-certificate-data"`
		} `json:"user"`
	} `json:"users"`
}

func clientCert(t *testing.T, kc string) (*x509.Certificate, string) {
	t.Helper()
	var doc kubeconfigDoc
	if err := yaml.Unmarshal([]byte(kc), &doc); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	if len(doc.Users) != 1 || len(doc.Clusters) != 1 {
		t.Fatalf("kubeconfig has %d users and %d clusters", len(doc.Users), len(doc.Clusters))
	}
	b, err := base64.StdEncoding.DecodeString(doc.Users[0].User.Cert)
	if err != nil {
		t.Fatalf("client-certificate-data: %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("client certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert, doc.Clusters[0].Cluster.Server
}

func TestKubeconfigEphemeral(t *testing.T) {
	ctx := context.Background()
	inv, enc := clusterStateWithPKI(t)
	r := &kubeconfigEphemeralResource{}
	var sr ephemeral.SchemaResponse
	r.Schema(ctx, ephemeral.SchemaRequest{}, &sr)
	if d := sr.Schema.ValidateImplementation(ctx); d.HasError() {
		t.Fatalf("schema: %v", d)
	}
	for name, a := range sr.Schema.Attributes {
		if a.GetMarkdownDescription() == "" {
			t.Errorf("%s has no MarkdownDescription", name)
		}
	}
	if !sr.Schema.Attributes["kubeconfig"].IsSensitive() || !sr.Schema.Attributes["cluster_state"].IsSensitive() {
		t.Error("kubeconfig and cluster_state must be sensitive")
	}

	base := kubeconfigModel{Path: types.StringValue(inv), YAML: types.StringNull(), ClusterState: types.StringValue(enc),
		User: types.StringNull(), Groups: types.ListNull(types.StringType), TTL: types.StringNull()}

	admin := base
	if d := r.open(ctx, &admin); d.HasError() {
		t.Fatalf("admin: %v", d)
	}
	cert, server := clientCert(t, admin.Kubeconfig.ValueString())
	if server != "https://198.19.64.10:6443" || admin.APIServerURL.ValueString() != server {
		t.Errorf("server %q, api_server_url %q", server, admin.APIServerURL.ValueString())
	}
	if cert.Subject.CommonName != pki.AdminUser || !pki.InAdminGroup(cert) || admin.ExpiresAt.ValueString() != "" {
		t.Errorf("admin kubeconfig for %q in %v, expires_at %q", cert.Subject.CommonName, cert.Subject.Organization, admin.ExpiresAt.ValueString())
	}

	user := base
	user.User = types.StringValue("alice")
	user.Groups, _ = types.ListValueFrom(ctx, types.StringType, []string{"devs"})
	user.TTL = types.StringValue("30m")
	before := time.Now()
	if d := r.open(ctx, &user); d.HasError() {
		t.Fatalf("user: %v", d)
	}
	cert, _ = clientCert(t, user.Kubeconfig.ValueString())
	if cert.Subject.CommonName != "alice" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "devs" {
		t.Errorf("user certificate subject %v", cert.Subject)
	}
	if got := cert.NotAfter.Sub(before); got < 29*time.Minute || got > 31*time.Minute {
		t.Errorf("user certificate valid for %v, want 30m", got)
	}
	exp, err := time.Parse(time.RFC3339, user.ExpiresAt.ValueString())
	if err != nil || !exp.Equal(cert.NotAfter.Truncate(time.Second)) {
		t.Errorf("expires_at %q, certificate %v (%v)", user.ExpiresAt.ValueString(), cert.NotAfter, err)
	}

	for _, tc := range []struct {
		name string
		edit func(*kubeconfigModel)
		want string
	}{
		{"no state", func(m *kubeconfigModel) { m.ClusterState = types.StringValue("{}") }, "No cluster state"},
		{"bad state", func(m *kubeconfigModel) { m.ClusterState = types.StringValue("[") }, "Unreadable cluster state"},
		{"ttl too long", func(m *kubeconfigModel) { m.User = types.StringValue("bob"); m.TTL = types.StringValue("100000h") }, "Cannot issue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			tc.edit(&m)
			d := r.open(ctx, &m)
			if !d.HasError() || !strings.Contains(summary(d), tc.want) {
				t.Fatalf("diagnostics %q, want %q", summary(d), tc.want)
			}
		})
	}
}
