package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// kubeconfigDoc is the part of a kubeconfig the test reads.
type kubeconfigDoc struct {
	Clusters []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server string `json:"server"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		User map[string]string `json:"user"`
	} `json:"users"`
}

// kubeconfigState is a state directory holding the PKI an apply creates
// first, for labInv.
func kubeconfigState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	c, lines, err := inventory.Load(labInv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(dir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := installer.New(installer.Config{Cluster: c, Lines: lines, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	e.Close()
	return dir
}

// issuedLog reads the issued-certificate log of kubeconfigState's
// directory.
func issuedLog(t *testing.T, dir string) []state.IssuedCert {
	t.Helper()
	c, _, err := inventory.Load(labInv)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := (&state.Dir{Path: filepath.Join(dir, c.Metadata.Name)}).Issued()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestKubeconfigUserRefusals: --user and --group refuse every system:
// form (and the admin group) naming the value and --allow-system-groups,
// --ttl refuses more than 24h naming --allow-long-ttl and more than a
// year even with it, the user flags need --user; a refusal writes no file
// and records nothing. With the flags the certificate is issued, and the
// log records the overrides.
func TestKubeconfigUserRefusals(t *testing.T) {
	dir := kubeconfigState(t)
	file := filepath.Join(t.TempDir(), "u.conf")
	base := []string{"kubeconfig", "-f", labInv, "--state-dir", dir, "--output-file", file}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "mallory", "--group", "system:masters"},
			`group "system:masters" is reserved: system:masters bypasses RBAC: nothing can revoke what it grants; pass --allow-system-groups to issue it anyway`},
		{[]string{"--user", "mallory", "--group", "devs,System:Masters"}, `group "System:Masters" is reserved`},
		{[]string{"--user", "mallory", "--group", "system:nodes"}, `group "system:nodes" is reserved: it is a kubelet's identity`},
		{[]string{"--user", "system:node:dc1-w01"}, `user "system:node:dc1-w01" is reserved: it is a kubelet's identity`},
		{[]string{"--user", "system:serviceaccount:kube-system:default"}, `user "system:serviceaccount:kube-system:default" is reserved`},
		{[]string{"--user", "mallory", "--group", "system:serviceaccounts"}, `group "system:serviceaccounts" is reserved`},
		{[]string{"--user", "system:kube-scheduler"}, `user "system:kube-scheduler" is reserved: system: users and groups are Kubernetes' own identities; pass --allow-system-groups`},
		{[]string{"--user", "mallory", "--group", "tricenter:cluster-admins"}, `group "tricenter:cluster-admins" is reserved: it is the admin kubeconfig's group`},
		{[]string{"--user", "tricenter-admin"}, `user "tricenter-admin" is reserved`},
		{[]string{"--user", "kube-apiserver-kubelet-client"}, `user "kube-apiserver-kubelet-client" is reserved`},
		{[]string{"--user", "alice", "--ttl", "25h"}, "--ttl 25h: a validity of 25h is longer than 24h; use --ttl 24h or less, or pass --allow-long-ttl"},
		{[]string{"--user", "alice", "--ttl", "9000h", "--allow-long-ttl"}, "--ttl 9000h: a validity of 9000h is longer than 8760h, the most any certificate is issued for"},
		{[]string{"--user", "alice", "--ttl", "30s"}, "--ttl 30s: a validity of 30s is shorter than 1m"},
		{[]string{"--group", "devs"}, "--group applies to a user certificate: pass --user NAME too"},
		{[]string{"--ttl", "1h"}, "--ttl applies to a user certificate: pass --user NAME too"},
		{[]string{"--allow-system-groups"}, "--allow-system-groups applies to a user certificate: pass --user NAME too"},
		{[]string{"--allow-long-ttl"}, "--allow-long-ttl applies to a user certificate: pass --user NAME too"},
		{[]string{"--user", "alice", "--server", "https://198.18.0.1:6443"}, "--server applies to the admin kubeconfig"},
	} {
		out, errs, code := runCLI(t, append(slices.Clone(base), tc.args...)...)
		if code != 1 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %s\nwant %q", tc.args, code, out, errs, tc.want)
		}
		if _, err := os.Stat(file); err == nil {
			t.Fatalf("%q: a refusal wrote %s", tc.args, file)
		}
	}
	if recs := issuedLog(t, dir); len(recs) != 0 {
		t.Fatalf("refusals recorded %+v", recs)
	}

	before := time.Now()
	_, errs, code := runCLI(t, append(slices.Clone(base), "--user", "breakglass", "--group", "system:masters",
		"--allow-system-groups", "--ttl", "48h", "--allow-long-ttl")...)
	if code != 0 {
		t.Fatalf("with the overrides: exit %d: %s", code, errs)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cert := kubeconfigClientCert(t, b)
	if cert.Subject.CommonName != "breakglass" || !slices.Equal(cert.Subject.Organization, []string{"system:masters"}) ||
		cert.NotAfter.Sub(before) < 47*time.Hour || cert.NotAfter.Sub(before) > 49*time.Hour {
		t.Fatalf("with the overrides: %v until %v", cert.Subject, cert.NotAfter)
	}
	recs := issuedLog(t, dir)
	if len(recs) != 1 || recs[0].Subject != "breakglass" || !slices.Equal(recs[0].Overrides, []string{"allow-system-groups", "allow-long-ttl"}) {
		t.Fatalf("log %+v, want breakglass with both overrides", recs)
	}
}

// kubeconfigClientCert is the client certificate of a YAML kubeconfig.
func kubeconfigClientCert(t *testing.T, kc []byte) *x509.Certificate {
	t.Helper()
	var doc kubeconfigDoc
	if err := yaml.Unmarshal(kc, &doc); err != nil || len(doc.Users) != 1 {
		t.Fatalf("kubeconfig (%v):\n%s", err, kc)
	}
	der, err := base64.StdEncoding.DecodeString(doc.Users[0].User["client-certificate-data"])
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(der)
	if blk == nil {
		t.Fatal("client-certificate-data is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestKubeconfigIssuedLog: each --user certificate is recorded (serial,
// user, groups, validity, the OS user and host of the process) in issue
// order; kubeconfig issued prints the log as a table and, with -o json,
// as a JSON array; the log holds no key; the stderr line names the
// serial. An empty log prints nothing on stdout.
func TestKubeconfigIssuedLog(t *testing.T) {
	dir := kubeconfigState(t)
	out, errs, code := runCLI(t, "kubeconfig", "issued", "-f", labInv, "--state-dir", dir)
	if code != 0 || out != "" || !strings.Contains(errs, "No user certificate issued") {
		t.Fatalf("empty log: exit %d, stdout %q: %s", code, out, errs)
	}
	out, _, code = runCLI(t, "kubeconfig", "issued", "-f", labInv, "--state-dir", dir, "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty log -o json: exit %d: %q", code, out)
	}

	var certs []*x509.Certificate
	for _, args := range [][]string{{"--user", "alice", "--group", "platform", "--group", "oncall"}, {"--user", "bob", "--ttl", "1h"}} {
		kc, errs, code := runCLI(t, append([]string{"kubeconfig", "-f", labInv, "--state-dir", dir}, args...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errs)
		}
		cert := kubeconfigClientCert(t, []byte(kc))
		certs = append(certs, cert)
		serial := fmt.Sprintf("%X", cert.SerialNumber)
		if len(serial)%2 == 1 { // as openssl x509 -serial prints it
			serial = "0" + serial
		}
		if want := "certificate for " + args[1] + " valid until " + cert.NotAfter.UTC().Format(time.RFC3339) +
			" (serial " + serial + ", recorded in the issued-certificate log)"; !strings.Contains(errs, want) {
			t.Errorf("stderr %q, want %q", errs, want)
		}
	}
	if got := certs[0].NotAfter.Sub(certs[0].NotBefore); got != 9*time.Hour { // NotBefore is an hour back
		t.Errorf("default --ttl gave %v between not-before and not-after, want 8h + 1h", got)
	}

	host, _ := os.Hostname()
	recs := issuedLog(t, dir)
	if len(recs) != 2 {
		t.Fatalf("log has %d records, want 2", len(recs))
	}
	for i, r := range recs {
		c := certs[i]
		if !strings.HasSuffix(r.Serial, fmt.Sprintf("%X", c.SerialNumber)) || len(r.Serial)%2 != 0 || r.Subject != c.Subject.CommonName ||
			!slices.Equal(r.Groups, c.Subject.Organization) || !r.NotAfter.Equal(c.NotAfter) || !r.NotBefore.Equal(c.NotBefore) ||
			r.RequestedBy.Host != host || r.RequestedBy.User == "" || r.RequestedBy.Tool != "tricenter" ||
			r.RequestedBy.Command != "kubeconfig" || r.IssuedAt.IsZero() {
			t.Errorf("record %d %+v does not describe %v (serial %X, until %v) issued here", i, r, c.Subject, c.SerialNumber, c.NotAfter)
		}
	}
	raw, err := os.ReadFile(issuedPath(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "PRIVATE KEY") || strings.Contains(string(raw), "BEGIN") {
		t.Fatalf("the log holds PEM data:\n%s", raw)
	}

	out, errs, code = runCLI(t, "kubeconfig", "issued", "-f", labInv, "--state-dir", dir)
	if code != 0 {
		t.Fatalf("issued: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	header := regexp.MustCompile(`^ISSUED +SERIAL +USER +GROUPS +NOT AFTER +VALID +REQUESTED BY +OVERRIDES$`)
	if len(lines) != 3 || !header.MatchString(lines[0]) {
		t.Fatalf("table:\n%s", out)
	}
	for i, r := range recs {
		fields := strings.Fields(lines[i+1])
		want := []string{r.IssuedAt.UTC().Format(time.RFC3339), r.Serial, r.Subject, strings.Join(r.Groups, ","),
			r.NotAfter.UTC().Format(time.RFC3339), "yes"}
		if len(r.Groups) == 0 {
			want[3] = "-"
		}
		if len(fields) < 8 || !slices.Equal(fields[:6], want) || !strings.HasSuffix(fields[len(fields)-2], "@"+host) || fields[len(fields)-1] != "-" {
			t.Errorf("table row %d %q, want %q ... @%s -", i, fields, want, host)
		}
	}

	out, _, code = runCLI(t, "kubeconfig", "issued", "-f", labInv, "--state-dir", dir, "-o", "json")
	var fromJSON []state.IssuedCert
	if code != 0 || json.Unmarshal([]byte(out), &fromJSON) != nil || len(fromJSON) != 2 ||
		fromJSON[0].Serial != recs[0].Serial || fromJSON[1].Serial != recs[1].Serial {
		t.Fatalf("issued -o json (exit %d):\n%s", code, out)
	}
}

// issuedPath is the issued-certificate log of kubeconfigState's directory.
func issuedPath(t *testing.T, dir string) string {
	t.Helper()
	c, _, err := inventory.Load(labInv)
	if err != nil {
		t.Fatal(err)
	}
	return (&state.Dir{Path: filepath.Join(dir, c.Metadata.Name)}).IssuedPath()
}

// TestKubeconfigOutput: -o is the format (yaml, json), --output-file the
// file (0600); -o PATH, its old meaning, fails pointing at --output-file.
func TestKubeconfigOutput(t *testing.T) {
	dir := t.TempDir()
	c, lines, err := inventory.Load(labInv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(dir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := installer.New(installer.Config{Cluster: c, Lines: lines, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.EtcdPKI(true); err != nil { // what apply creates first
		t.Fatal(err)
	}
	e.Close()
	switchAdmin(t, st)

	yamlOut, errs, code := runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir)
	if code != 0 {
		t.Fatalf("kubeconfig: exit %d: %s", code, errs)
	}
	var fromYAML, fromJSON kubeconfigDoc
	if err := yaml.Unmarshal([]byte(yamlOut), &fromYAML); err != nil || strings.HasPrefix(yamlOut, "{") {
		t.Fatalf("default output is not YAML: %v\n%s", err, yamlOut)
	}
	jsonOut, errs, code := runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("kubeconfig -o json: exit %d: %s", code, errs)
	}
	if err := json.Unmarshal([]byte(jsonOut), &fromJSON); err != nil {
		t.Fatalf("-o json: %v\n%s", err, jsonOut)
	}
	if len(fromJSON.Clusters) != 1 || fromJSON.Clusters[0].Cluster.Server != e.APIServerURL() ||
		fromJSON.Clusters[0].Cluster.Server != fromYAML.Clusters[0].Cluster.Server ||
		len(fromJSON.Users) != 1 || fromJSON.Users[0].User["client-key-data"] == "" {
		t.Fatalf("-o json holds another kubeconfig than the YAML: %+v vs %+v", fromJSON, fromYAML)
	}

	file := filepath.Join(t.TempDir(), "admin.json")
	out, errs, code := runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir, "-o", "json", "--output-file", file)
	if code != 0 || out != "" {
		t.Fatalf("--output-file: exit %d, stdout %q: %s", code, out, errs)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--output-file wrote %v (%v), want mode 0600", fi, err)
	}
	var written kubeconfigDoc
	if b, _ := os.ReadFile(file); json.Unmarshal(b, &written) != nil || len(written.Clusters) != 1 {
		t.Fatalf("the file is not the JSON kubeconfig: %s", b)
	}

	_, errs, code = runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir, "-o", "admin.conf")
	if code != 1 || !strings.Contains(errs, `-o "admin.conf": use yaml or json (-o is the output format; write to a file with --output-file admin.conf)`) {
		t.Fatalf("-o PATH (exit %d): %s", code, errs)
	}
	if _, err := os.Stat("admin.conf"); err == nil {
		t.Fatal("-o PATH wrote a file")
	}
}

// switchAdmin stores the admin certificate in its group, as apply's
// add-ons step does once the binding answers (here a fake verify that
// accepts it: no API server).
func switchAdmin(t *testing.T, st *state.Dir) {
	t.Helper()
	if _, _, err := st.PKI().SwitchAdmin(func(*pki.KeyPair) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// kubeconfigCert is the client certificate of a kubeconfig (YAML).
func kubeconfigCert(t *testing.T, kc string) *x509.Certificate {
	t.Helper()
	var doc kubeconfigDoc
	if err := yaml.Unmarshal([]byte(kc), &doc); err != nil || len(doc.Users) != 1 {
		t.Fatalf("not a kubeconfig with one user (%v):\n%s", err, kc)
	}
	der, err := base64.StdEncoding.DecodeString(doc.Users[0].User["client-certificate-data"])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(der)
	if b == nil {
		t.Fatal("client-certificate-data holds no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKubeconfigBreakGlass: before apply has bound the admin group there
// is no admin kubeconfig (the error names --break-glass); --break-glass
// writes the system:masters credential with a warning on stderr, and
// refuses --user; once the admin is switched the default kubeconfig is in
// tricenter:cluster-admins and not in system:masters.
func TestKubeconfigBreakGlass(t *testing.T) {
	dir := kubeconfigState(t)
	_, errs, code := runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir)
	if code != 1 || !strings.Contains(errs, "no admin certificate in the state") || !strings.Contains(errs, "--break-glass") {
		t.Fatalf("admin kubeconfig before the switch: exit %d: %s", code, errs)
	}
	out, errs, code := runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir, "--break-glass")
	if code != 0 {
		t.Fatalf("--break-glass: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "WARNING: this is the break-glass credential") || !strings.Contains(errs, "system:masters") {
		t.Errorf("--break-glass printed no warning on stderr: %q", errs)
	}
	if c := kubeconfigCert(t, out); c.Subject.CommonName != pki.BreakGlassUser || !slices.Equal(c.Subject.Organization, []string{pki.MastersGroup}) {
		t.Errorf("break-glass certificate %v", c.Subject)
	}
	if _, errs, code := runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir, "--break-glass", "--user", "alice"); code != 1 || !strings.Contains(errs, "--break-glass") {
		t.Errorf("--break-glass --user: exit %d: %s", code, errs)
	}

	c, _, err := inventory.Load(labInv)
	if err != nil {
		t.Fatal(err)
	}
	switchAdmin(t, &state.Dir{Path: filepath.Join(dir, c.Metadata.Name)})
	out, errs, code = runCLI(t, "kubeconfig", "-f", labInv, "--state-dir", dir)
	if code != 0 || strings.Contains(errs, "WARNING") {
		t.Fatalf("admin kubeconfig after the switch: exit %d: %s", code, errs)
	}
	if c := kubeconfigCert(t, out); c.Subject.CommonName != pki.AdminUser || !slices.Equal(c.Subject.Organization, []string{pki.AdminGroup}) {
		t.Errorf("admin certificate %v, want %s in %s only", c.Subject, pki.AdminUser, pki.AdminGroup)
	}
}

// TestOutputFlagIsAFormat: in every command -o is --output, a format;
// files go to --output-file (bgp's --out is its hidden old name).
func TestOutputFlagIsAFormat(t *testing.T) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		if fl := cmd.Flags().ShorthandLookup("o"); fl != nil && (fl.Name != "output" || !strings.HasPrefix(fl.Usage, "output format: ")) {
			t.Errorf("%s: -o is --%s (%s), not the output format", cmd.CommandPath(), fl.Name, fl.Usage)
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard))

	dir := t.TempDir()
	for _, name := range []string{"output-file", "out"} {
		file := filepath.Join(dir, name+".conf")
		out, errs, code := runCLI(t, "bgp", "render-frr", "-f", bgpInventory, "--router", "core-a1", "--"+name, file)
		if code != 0 || out != "" {
			t.Fatalf("bgp render-frr --%s: exit %d, stdout %q: %s", name, code, out, errs)
		}
		if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
			t.Fatalf("bgp render-frr --%s wrote %v (%v)", name, st, err)
		}
	}
}
