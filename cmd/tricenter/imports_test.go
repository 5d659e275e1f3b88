package main

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// shellDenied are the packages the shells (the CLI and the provider) must
// not import: orchestration and connections belong in the engine. The
// depguard rule "shells" in .golangci.yml says the same to the linter;
// this test holds it in `go test` without one.
var shellDenied = []struct {
	pkg string
	// exact: only the package itself (installer/sshtest, the test sshd
	// lab, stays allowed); otherwise its subpackages too.
	exact bool
	use   string
}{
	{"github.com/tricenter/terraform-provider-tricenter/installer/phase", false,
		"call installer.Engine (a method, or a Config field) instead of running phases"},
	{"github.com/tricenter/terraform-provider-tricenter/installer/ssh", true,
		"use installer.Engine and installer.Config (Bastion, KnownHosts, AcceptNewHostKeys)"},
}

// TestShellsImportNoPhasesOrSSH reads the imports of every Go file (tests
// included) of the CLI and the provider.
func TestShellsImportNoPhasesOrSSH(t *testing.T) {
	for _, dir := range []string{".", "../../provider"} {
		name := filepath.Clean(filepath.Join("cmd/tricenter", dir))
		t.Run(name, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(dir, "*.go"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 {
				t.Fatalf("no Go files in %s", name)
			}
			sort.Strings(files)
			fset := token.NewFileSet()
			for _, f := range files {
				af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
				if err != nil {
					t.Fatalf("reading the imports of %s: %v", f, err)
				}
				for _, imp := range af.Imports {
					path, _ := strconv.Unquote(imp.Path.Value)
					for _, d := range shellDenied {
						if path == d.pkg || !d.exact && strings.HasPrefix(path, d.pkg+"/") {
							t.Errorf("%s imports %s: %s", filepath.Join(name, filepath.Base(f)), path, d.use)
						}
					}
				}
			}
		})
	}
}
