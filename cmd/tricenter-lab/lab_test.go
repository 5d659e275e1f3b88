package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The command lines in the help text and in docs/cli/tricenter-lab.md name
// real commands and flags of this binary (parsed only; nothing runs).
func TestExamplesUseRealFlags(t *testing.T) {
	var lines []string
	for _, c := range allCommands(newRootCmd(io.Discard, io.Discard)) {
		lines = append(lines, strings.Split(c.Example, "\n")...)
		for _, l := range strings.Split(c.Long, "\n") {
			if strings.TrimLeft(l, " \t") != l { // command lines are indented
				lines = append(lines, l)
			}
		}
	}
	doc, err := codeBlockLines(filepath.Join("..", "..", "docs", "cli", "tricenter-lab.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, doc...)
	checked := 0
	for _, l := range lines {
		ok, err := checkLine(l)
		if ok {
			checked++
		}
		if err != nil {
			t.Errorf("%q: %v", strings.TrimSpace(l), err)
		}
	}
	// 3 in the root's example, 3 synopsis lines in the doc.
	if checked < 6 {
		t.Fatalf("checked %d tricenter-lab lines, want at least 6", checked)
	}
	t.Logf("checked %d tricenter-lab lines", checked)
}

// The checker catches a wrong command, a wrong flag and a flag of another
// command.
func TestCheckLine(t *testing.T) {
	for _, tc := range []struct {
		line, wantErr string
	}{
		{"sudo tricenter-lab up -f examples/lab/lab.yaml --artifact-dir /a", ""},
		{"$ bin/tricenter-lab status -o json", ""},
		{"tricenter-lab down [-f LAB] [--dir DIR] [--log-level L]", ""},
		{"tricenter-lab frobnicate", `unknown command "frobnicate"`},
		{"tricenter-lab down --artifact-dir /a", "unknown flag: --artifact-dir"},
		{"tricenter-lab status [-f LAB] [-x]", "-x"},
		{"tricenter-lab status [-dir DIR]", "-dir"},
	} {
		ok, err := checkLine(tc.line)
		if !ok {
			t.Errorf("%q: not recognised as a tricenter-lab line", tc.line)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want one containing %q", tc.line, err, tc.wantErr)
		}
	}
	if ok, _ := checkLine("tricenter bmc on -f x"); ok {
		t.Error("a tricenter line was taken for a tricenter-lab line")
	}
}

// acceptance/lab.Up starts `BINARY serve -f SPEC --dir DIR --artifact-dir
// DIR` in the background: this binary must take exactly that.
func TestServeTakesWhatUpStarts(t *testing.T) {
	root := newRootCmd(io.Discard, io.Discard)
	cmd, rest, err := root.Find([]string{"serve", "-f", "lab.yaml", "--dir", "/d", "--artifact-dir", "/a"})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Name() != "serve" || !cmd.Hidden {
		t.Fatalf("found %q (hidden %v), want the hidden serve command", cmd.Name(), cmd.Hidden)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"file": "lab.yaml", "dir": "/d", "artifact-dir": "/a"} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("serve --%s = %q, want %q", flag, got, want)
		}
	}
}

// A wrong -o is refused before the lab is looked at, naming the flag.
func TestStatusOutputFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	root := newRootCmd(&stdout, &stderr)
	root.SetArgs([]string{"status", "--dir", t.TempDir(), "-o", "yaml"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), `--output "yaml"`) {
		t.Fatalf("status -o yaml: %v, want the --output error", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("status -o yaml printed %q", stdout.String())
	}
}

func allCommands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		out = append(out, allCommands(c)...)
	}
	return out
}

// codeBlockLines returns the lines inside ``` blocks of a markdown file.
func codeBlockLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "```") {
			in = !in
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

var (
	pathWord = regexp.MustCompile(`^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$`)
	flagWord = regexp.MustCompile(`^\[?(--?[a-zA-Z][a-zA-Z0-9-]*)`)
)

// checkLine checks one line if it is a tricenter-lab command (ok): a
// synopsis ([optional] parts; its commands, one per alternative, exist and
// take every flag it shows) or a command line (the command exists and its
// flags and arguments parse).
func checkLine(line string) (ok bool, err error) {
	l := strings.TrimSpace(line)
	l = strings.TrimPrefix(l, "$ ")
	if i := strings.Index(l, " #"); i >= 0 {
		l = l[:i]
	}
	words := strings.Fields(l)
	if len(words) > 0 && words[0] == "sudo" {
		words = words[1:]
	}
	if len(words) == 0 || filepath.Base(words[0]) != "tricenter-lab" {
		return false, nil
	}
	words = words[1:]
	if !strings.ContainsAny(l, "[]") {
		root := newRootCmd(io.Discard, io.Discard)
		cmd, rest, err := root.Find(words)
		if err != nil {
			return true, err
		}
		if err := cmd.ParseFlags(rest); err != nil {
			return true, fmt.Errorf("%s: %w", cmd.CommandPath(), err)
		}
		return true, cmd.ValidateArgs(cmd.Flags().Args())
	}
	i := 0
	for i < len(words) && pathWord.MatchString(words[i]) {
		i++
	}
	var alts []string
	if i > 0 {
		alts = strings.Split(words[0], "|")
	}
	if i > 1 {
		return true, fmt.Errorf("tricenter-lab has no nested commands: %q", strings.Join(words[:i], " "))
	}
	for _, alt := range alts {
		root := newRootCmd(io.Discard, io.Discard)
		cmd, rest, err := root.Find([]string{alt})
		if err != nil {
			return true, err
		}
		if len(rest) > 0 {
			return true, fmt.Errorf("%s has no subcommand %s", cmd.CommandPath(), rest[0])
		}
		if err := cmd.ParseFlags(nil); err != nil { // merges the persistent flags
			return true, err
		}
		for _, w := range words[i:] {
			m := flagWord.FindStringSubmatch(w)
			if m == nil {
				continue
			}
			name := m[1]
			if long, isLong := strings.CutPrefix(name, "--"); isLong {
				if cmd.Flags().Lookup(long) == nil {
					return true, fmt.Errorf("%s has no flag %s", cmd.CommandPath(), name)
				}
			} else if short := strings.TrimPrefix(name, "-"); len(short) != 1 || cmd.Flags().ShorthandLookup(short) == nil {
				return true, fmt.Errorf("%s has no flag %s", cmd.CommandPath(), name)
			}
		}
	}
	return true, nil
}
