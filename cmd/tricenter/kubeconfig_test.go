package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/installer"
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
