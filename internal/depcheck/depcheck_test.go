package depcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tricenter/terraform-provider-tricenter"

// lab is what only the lab (cmd/tricenter-lab) and the tests may link.
var lab = []string{module + "/acceptance", module + "/internal/ipmisim", module + "/bgp/bgplab"}

const gobgp = "github.com/osrg/gobgp"

// rules: what each product binary must not link.
var rules = []struct {
	binary, pkg string
	forbidden   []string
}{
	{"terraform-provider-tricenter", ".", append(slices.Clone(lab), gobgp)},
	{"tricenter", "./cmd/tricenter", append(slices.Clone(lab), gobgp)},
	{"tricenter-bgp", "./cmd/tricenter-bgp", lab},
	{"tricenter-probe", "./cmd/tricenter-probe", lab},
	{"tricenter-lb", "./cmd/tricenter-lb", append(slices.Clone(lab), gobgp)},
	{"tricenter-snapshot", "./cmd/tricenter-snapshot", append(slices.Clone(lab), gobgp)},
}

// TestProductBinariesLinkNoLab runs `go list -deps` on every product
// binary and fails naming each forbidden package it links and the import
// chain that pulls it in.
func TestProductBinariesLinkNoLab(t *testing.T) {
	root := moduleRoot(t)
	for _, r := range rules {
		t.Run(r.binary, func(t *testing.T) {
			g := listDeps(t, root, r.pkg)
			for _, v := range g.violations(r.forbidden) {
				t.Errorf("%s (%s) links %s, which it must not: %s", r.binary, r.pkg, v.pkg, strings.Join(v.chain, " -> "))
			}
		})
	}
}

// The check sees the lab where it is linked: the lab's own binary links
// acceptance/lab and internal/ipmisim, and the node agent links gobgp
// through bgp/agent (so a clean result above is not an empty listing).
func TestCheckSeesTheLab(t *testing.T) {
	root := moduleRoot(t)
	g := listDeps(t, root, "./cmd/tricenter-lab")
	vs := g.violations(lab)
	var got []string
	for _, v := range vs {
		got = append(got, v.pkg)
	}
	for _, want := range []string{module + "/acceptance/lab", module + "/internal/ipmisim"} {
		if !slices.Contains(got, want) {
			t.Errorf("cmd/tricenter-lab: the check did not find %s (found %v)", want, got)
		}
	}
	agent := listDeps(t, root, "./cmd/tricenter-bgp").violations([]string{gobgp})
	if len(agent) == 0 {
		t.Fatal("cmd/tricenter-bgp: the check found no gobgp package, but the agent embeds gobgp")
	}
	if c := agent[0].chain; !slices.Contains(c, module+"/bgp/agent") {
		t.Errorf("cmd/tricenter-bgp links gobgp through %v, want it through %s/bgp/agent", c, module)
	}
}

// violations on a fake import graph: each forbidden package once, with the
// shortest chain from the root; a prefix matches whole path elements only.
func TestViolationsFakeGraph(t *testing.T) {
	g := &graph{root: "m/cmd/x", imports: map[string][]string{
		"m/cmd/x":               {"m/installer", "m/acceptancetools", "fmt"},
		"m/installer":           {"m/bgp", "m/acceptance/lab"},
		"m/bgp":                 {"fmt"},
		"m/acceptance/lab":      {"m/acceptance/nspawn", "m/bgp"},
		"m/acceptance/nspawn":   nil,
		"m/acceptancetools":     nil,
		"fmt":                   nil,
		"github.com/osrg/gobgp": nil, // listed but not reachable
	}}
	vs := g.violations([]string{"m/acceptance", "github.com/osrg/gobgp"})
	want := []violation{
		{pkg: "m/acceptance/lab", chain: []string{"m/cmd/x", "m/installer", "m/acceptance/lab"}},
		{pkg: "m/acceptance/nspawn", chain: []string{"m/cmd/x", "m/installer", "m/acceptance/lab", "m/acceptance/nspawn"}},
	}
	if fmt.Sprint(vs) != fmt.Sprint(want) {
		t.Fatalf("violations = %v, want %v", vs, want)
	}
}

type graph struct {
	root    string
	imports map[string][]string
}

func (g *graph) has(p string) bool { _, ok := g.imports[p]; return ok }

type violation struct {
	pkg   string
	chain []string // root ... pkg
}

// violations lists the packages reachable from the root under any of the
// forbidden prefixes, sorted, each with its shortest import chain.
func (g *graph) violations(forbidden []string) []violation {
	bad := func(p string) bool {
		return slices.ContainsFunc(forbidden, func(f string) bool { return p == f || strings.HasPrefix(p, f+"/") })
	}
	parent := map[string]string{g.root: ""}
	queue := []string{g.root}
	var out []violation
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if bad(p) {
			var chain []string
			for q := p; q != ""; q = parent[q] {
				chain = append(chain, q)
			}
			slices.Reverse(chain)
			out = append(out, violation{pkg: p, chain: chain})
		}
		for _, q := range g.imports[p] {
			if _, seen := parent[q]; !seen {
				parent[q] = p
				queue = append(queue, q)
			}
		}
	}
	slices.SortFunc(out, func(a, b violation) int { return strings.Compare(a.pkg, b.pkg) })
	return out
}

// listDeps is the import graph of pkg's build (no tests), from go list.
func listDeps(t *testing.T, root, pkg string) *graph {
	t.Helper()
	out := goList(t, root, "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pkg)
	g := &graph{imports: map[string][]string{}}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 {
			g.imports[f[0]] = f[1:]
		}
	}
	g.root = strings.TrimSpace(goList(t, root, "-f", "{{.ImportPath}}", pkg))
	if !g.has(g.root) {
		t.Fatalf("go list -deps %s does not list %s itself", pkg, g.root)
	}
	return g
}

func goList(t *testing.T, dir string, args ...string) string {
	t.Helper()
	// go test puts its own toolchain first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	cmd := exec.Command(goBin, append([]string{"list"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}
