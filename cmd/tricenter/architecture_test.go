package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer"
)

const archDoc = "../../docs/architecture.md"

// TestArchitecturePhases: docs/architecture.md shows the one workflow as
// `tricenter apply --list-phases` prints it (UPDATE_DOCS=1 rewrites it).
func TestArchitecturePhases(t *testing.T) {
	var out bytes.Buffer
	g := &globals{stdout: &out}
	if err := printPhases(g, "table"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(archDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	begin := strings.Index(doc, "<!-- phases:begin")
	end := strings.Index(doc, "<!-- phases:end -->")
	if begin < 0 || end < begin {
		t.Fatalf("%s has no phases:begin/phases:end markers", archDoc)
	}
	begin += strings.Index(doc[begin:], "-->") + len("-->\n")
	want := "```\n" + out.String() + "```\n"
	if doc[begin:end] == want {
		return
	}
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(archDoc, []byte(doc[:begin]+want+doc[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s lists other phases than apply --list-phases:\n%s\nwant:\n%s(run UPDATE_DOCS=1 go test ./cmd/tricenter -run TestArchitecturePhases)",
		archDoc, doc[begin:end], want)
}

// TestListPhases: apply --list-phases prints the engine's one list, in
// order, with and without -o json.
func TestListPhases(t *testing.T) {
	out, errOut, code := runCLI(t, "apply", "--list-phases", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []installer.PhaseInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var ids []string
	for _, p := range got {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, installer.PhaseIDs()) {
		t.Fatalf("--list-phases: %v\nwant %v", ids, installer.PhaseIDs())
	}
	out, errOut, code = runCLI(t, "apply", "--list-phases")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(ids)+1 || !strings.HasPrefix(lines[1], "preflight/reachable") || !strings.HasPrefix(lines[len(lines)-1], ids[len(ids)-1]+" ") {
		t.Fatalf("table:\n%s", out)
	}
	if _, errOut, code := runCLI(t, "apply", "-f", "x.yaml", "--only", "etcd/nope"); code == 0 || !strings.Contains(errOut, `unknown component or phase "etcd/nope"`) {
		t.Fatalf("--only etcd/nope: exit %d: %s", code, errOut)
	}
}
