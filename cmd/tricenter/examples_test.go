package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The help text and docs/cli name real commands and flags: every
// `tricenter ...` line of a command's Example, of its Long text (indented
// lines, as cobra prints examples) and of the code blocks in docs/cli/*.md
// resolves to a command of newRootCmd and parses with that command's flags
// (cmd.ParseFlags; nothing runs).

// TestHelpExamplesUseRealFlags walks every command (hidden ones too) and
// checks the command lines of its Example and Long text.
func TestHelpExamplesUseRealFlags(t *testing.T) {
	checked := 0
	for _, c := range allCommands(newRootCmd(io.Discard, io.Discard)) {
		lines := strings.Split(c.Example, "\n")
		for _, l := range strings.Split(c.Long, "\n") {
			// Prose starts at the margin ("tricenter takes ..."); command
			// lines are indented.
			if strings.TrimLeft(l, " \t") != l {
				lines = append(lines, l)
			}
		}
		for _, l := range joinContinuations(lines) {
			n, err := checkCommandLine(l)
			checked += n
			if err != nil {
				t.Errorf("%s: help example %q: %v", c.CommandPath(), strings.TrimSpace(l), err)
			}
		}
	}
	// The tree has examples on most commands: finding none means the walk
	// or the line filter broke, not that all is well.
	if checked < 10 {
		t.Fatalf("checked %d tricenter command lines in the help text, want at least 10", checked)
	}
	t.Logf("checked %d tricenter command lines in the help text", checked)
}

// TestDocsExamplesUseRealFlags checks the tricenter lines in the code
// blocks of docs/cli/*.md: lines with a "$ " prompt (and plain command
// lines) are parsed like help examples; synopsis lines, those with
// [optional] parts or alternatives, have their command path and every flag
// name looked up.
func TestDocsExamplesUseRealFlags(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "cli", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no docs/cli/*.md found from cmd/tricenter")
	}
	checked := 0
	for _, f := range files {
		blocks, err := codeBlockLines(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range blocks {
			var n int
			var err error
			if isSynopsis(l.text) {
				n, err = checkSynopsis(l.text)
			} else {
				n, err = checkCommandLine(l.text)
			}
			checked += n
			if err != nil {
				t.Errorf("%s:%d: %q: %v", f, l.line, l.text, err)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d tricenter lines in docs/cli, want at least 20", checked)
	}
	t.Logf("checked %d tricenter lines in %d files of docs/cli", checked, len(files))
}

// The checkers themselves: a wrong flag, a wrong command and a wrong
// argument count are caught; pipes, comments, quotes, sudo and
// environment assignments are handled.
func TestCheckCommandLine(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    int    // tricenter commands checked
		wantErr string // "" for none
	}{
		{"  sudo tricenter apply -f inv.yaml --power-on --yes", 1, "unknown flag: --power-on"},
		{"tricenter apply -f inv.yaml --wait-reachable 5m --yes", 1, ""},
		{"tricenter apply -f inv.yaml --wait-reachable soon", 1, `invalid argument "soon"`},
		{"tricenter etcd frobnicate", 1, "etcd frobnicate"},
		{"tricenter frobnicate -f x", 1, `unknown command "frobnicate"`},
		{"tricenter validate -f a.yaml extra", 1, `unknown command "extra"`},
		{"tricenter plan -f c.yaml -o json | jq '.etcd | select(.x)' # --nope", 1, ""},
		{"terraform output -raw s | tricenter state restore -f c.yaml --from - --bogus", 1, "unknown flag: --bogus"},
		{"$ BMC_PASSWORD=wrong tricenter bmc status -f lab.yaml --rack dc3-r01", 1, ""},
		{"tricenter exec -f lab.yaml --sudo -- 'id -un; hostname -I --not-a-flag'", 1, ""},
		{`tricenter exec -f "my lab.yaml" --host "a b" -- true 2>&1 >/dev/null`, 1, ""},
		{"kubectl get nodes --whatever", 0, ""},
		{"tricenter bmc on", 1, "no inventory: pass -f FILE"},
		{"TRICENTER_INVENTORY=lab.yaml tricenter bmc on", 1, ""},
		{"tricenter apply --list-phases", 1, ""},
		{"tricenter --version", 1, ""},
	} {
		n, err := checkCommandLine(tc.line)
		if n != tc.want {
			t.Errorf("%q: checked %d tricenter commands, want %d", tc.line, n, tc.want)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want one containing %q", tc.line, err, tc.wantErr)
		}
	}
}

func TestCheckSynopsis(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    int
		wantErr string
	}{
		{"tricenter bmc status|on|off -f FILE [--center C] [-o table|json]", 3, ""},
		{"tricenter bmc status|on|bogus -f FILE", 3, "bmc bogus"},
		{"tricenter apply -f FILE [--only COMPONENT,...] [--power-on] [--yes]", 1, "--power-on"},
		{"tricenter kubeconfig -f FILE --user NAME [--group G]... [-x]", 1, "-x"},
		{"tricenter state restore -f FILE --from STATE_JSON|- [--state-dir DIR]", 1, ""},
		{"tricenter etcd status [-f FILE] [--state-dir DIR] [--log-level L]", 1, ""},
	} {
		n, err := checkSynopsis(tc.line)
		if n != tc.want {
			t.Errorf("%q: checked %d commands, want %d", tc.line, n, tc.want)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want one containing %q", tc.line, err, tc.wantErr)
		}
	}
}

func TestShellCommands(t *testing.T) {
	for _, tc := range []struct {
		line string
		want [][]string
	}{
		{`a b  c`, [][]string{{"a", "b", "c"}}},
		{`a 'b c' "d \"e\"" f\ g`, [][]string{{"a", "b c", `d "e"`, "f g"}}},
		{`a | b && c; d & e || f`, [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"f"}}},
		{`a x#y # comment | b`, [][]string{{"a", "x#y"}}},
		{`a >out 2>&1 b < in c >> log`, [][]string{{"a", "b", "c"}}},
		{`a '' b`, [][]string{{"a", "", "b"}}},
	} {
		got, err := shellCommands(tc.line)
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("%q: %q, want %q", tc.line, got, tc.want)
		}
	}
	if _, err := shellCommands(`a 'b`); err == nil {
		t.Error("an unterminated quote was accepted")
	}
}

// allCommands is root and every command below it.
func allCommands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		out = append(out, allCommands(c)...)
	}
	return out
}

// joinContinuations joins lines ending in a backslash with the next.
func joinContinuations(lines []string) []string {
	var out []string
	cur := ""
	for _, l := range lines {
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), `\`); ok {
			cur += s + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// tricenterArgs returns the arguments after "tricenter" of one simple
// command, skipping sudo (and its options) and environment assignments,
// or false when the command is not tricenter.
func tricenterArgs(words []string) ([]string, bool) {
	assign := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	for len(words) > 0 && assign.MatchString(words[0]) {
		words = words[1:]
	}
	if len(words) > 0 && words[0] == "sudo" {
		words = words[1:]
		for len(words) > 0 && strings.HasPrefix(words[0], "-") {
			words = words[1:]
		}
	}
	if len(words) == 0 || filepath.Base(words[0]) != "tricenter" {
		return nil, false
	}
	return words[1:], true
}

// checkCommandLine checks every tricenter command of a shell line: the
// command exists, its flags parse with that command's flag set, its
// required flags are there and its arguments fit. It returns how many
// tricenter commands the line holds.
func checkCommandLine(line string) (int, error) {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "$ ")
	cmds, err := shellCommands(line)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, words := range cmds {
		args, ok := tricenterArgs(words)
		if !ok {
			continue
		}
		n++
		env := slices.ContainsFunc(words, func(w string) bool { return strings.HasPrefix(w, envInventory+"=") })
		if err := checkArgs(args, env); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// checkArgs checks one tricenter command line; envInventory says whether
// the line sets TRICENTER_INVENTORY (then -f may be left out).
func checkArgs(args []string, envInventory bool) error {
	root := newRootCmd(io.Discard, io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	pos := cmd.Flags().Args()
	if v := cmd.Flags().Lookup("version"); v != nil && v.Changed && !cmd.HasParent() && len(pos) == 0 {
		return nil // tricenter --version
	}
	if !cmd.Runnable() {
		if len(pos) > 0 {
			return fmt.Errorf("%s %s: %s has no such subcommand", cmd.CommandPath(), pos[0], cmd.CommandPath())
		}
		return fmt.Errorf("%s is not a command of its own: name a subcommand", cmd.CommandPath())
	}
	if err := cmd.ValidateArgs(pos); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if fl := inventoryFlagOf(cmd); fl != nil && !fl.Changed && !envInventory {
		return fmt.Errorf("%s: no inventory: pass -f FILE or set TRICENTER_INVENTORY", cmd.CommandPath())
	}
	return nil
}

// pathWord is a subcommand name, or alternatives of them (status|on|off).
var pathWord = regexp.MustCompile(`^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$`)

// isSynopsis reports whether a docs line is a synopsis ([optional] parts,
// repetition) rather than a command to run.
func isSynopsis(line string) bool {
	l := strings.TrimSpace(line)
	return !strings.HasPrefix(l, "$ ") && (strings.ContainsAny(l, "[]") || strings.Contains(l, "..."))
}

// checkSynopsis checks a synopsis line: each command its path names (one
// per alternative) exists, and every flag it shows is one of that
// command's. It returns how many commands it checked.
func checkSynopsis(line string) (int, error) {
	words, ok := tricenterArgs(strings.Fields(line))
	if !ok {
		return 0, nil
	}
	i := 0
	for i < len(words) && pathWord.MatchString(words[i]) {
		i++
	}
	paths := [][]string{nil}
	for _, w := range words[:i] {
		var next [][]string
		for _, p := range paths {
			for _, alt := range strings.Split(w, "|") {
				next = append(next, append(slices.Clone(p), alt))
			}
		}
		paths = next
	}
	var errs []error
	for _, p := range paths {
		root := newRootCmd(io.Discard, io.Discard)
		cmd, rest, err := root.Find(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(rest) > 0 && cmd.HasSubCommands() {
			errs = append(errs, fmt.Errorf("%s %s: %s has no such subcommand", cmd.CommandPath(), rest[0], cmd.CommandPath()))
			continue
		}
		// Merges the persistent flags of the parents into cmd.Flags().
		if err := cmd.ParseFlags(nil); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, w := range words[i:] {
			for _, name := range synopsisFlags(w) {
				var found bool
				if long, ok := strings.CutPrefix(name, "--"); ok {
					found = cmd.Flags().Lookup(long) != nil
				} else {
					found = cmd.Flags().ShorthandLookup(name[1:]) != nil
				}
				if !found {
					errs = append(errs, fmt.Errorf("%s: unknown flag %s", cmd.CommandPath(), name))
				}
			}
		}
	}
	return len(paths), errors.Join(errs...)
}

// synopsisFlags are the flags one synopsis word shows: "[--only" →
// --only, "[-o" → -o, "--group=G]..." → --group; "--" and "-" (stdin)
// are none; "-abc" is -a, -b and -c.
func synopsisFlags(w string) []string {
	w = strings.TrimLeft(w, "[")
	w, _, _ = strings.Cut(w, "=")
	w = strings.TrimRight(w, "].,")
	switch {
	case w == "--" || w == "-" || !strings.HasPrefix(w, "-"):
		return nil
	case strings.HasPrefix(w, "--"):
		return []string{w}
	}
	var out []string
	for _, r := range w[1:] {
		out = append(out, "-"+string(r))
	}
	return out
}

// docLine is a line of a fenced code block with its line number.
type docLine struct {
	line int
	text string
}

// codeBlockLines returns the tricenter lines inside the file's fenced code
// blocks; an indented line after one that starts with "[" or "-" continues
// it (a synopsis over two lines), as does a line after a backslash.
func codeBlockLines(path string) ([]docLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []docLine
	in := false
	cont := false // the last line kept may continue on the next
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in, cont = !in, false
			continue
		}
		if !in {
			continue
		}
		trimmed := strings.TrimSpace(l)
		if cont && len(out) > 0 && l != trimmed && (strings.HasPrefix(trimmed, "[") || strings.HasPrefix(trimmed, "-")) {
			last := &out[len(out)-1]
			last.text = strings.TrimSuffix(strings.TrimSpace(last.text), `\`) + " " + trimmed
			continue
		}
		cont = false
		// A tricenter command, alone or in a pipeline.
		for _, seg := range strings.Split(strings.TrimPrefix(trimmed, "$ "), "|") {
			if _, ok := tricenterArgs(strings.Fields(seg)); ok {
				out = append(out, docLine{line: n, text: trimmed})
				cont = true
				break
			}
		}
	}
	return out, sc.Err()
}

// shellCommands splits a shell line into its simple commands and their
// words, as sh would for help examples: single and double quotes and
// backslashes; a "#" that starts a word begins a comment; |, ||, &&, ; and
// & separate commands; redirections (>, >>, <, 2>&1) and their targets are
// dropped.
func shellCommands(line string) ([][]string, error) {
	var cmds [][]string
	var words []string
	var cur strings.Builder
	inWord, dropNext := false, false
	endWord := func() {
		if !inWord {
			return
		}
		if dropNext {
			dropNext = false
		} else {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t':
			endWord()
		case r == '#' && !inWord:
			endCmd()
			return cmds, nil
		case r == '|' || r == ';' || r == '&':
			if r != ';' && i+1 < len(rs) && rs[i+1] == r {
				i++
			}
			endCmd()
		case r == '>' || r == '<':
			// An fd number before it ("2>") is not a word.
			if inWord && isDigits(cur.String()) {
				cur.Reset()
				inWord = false
			} else {
				endWord()
			}
			for i+1 < len(rs) && (rs[i+1] == '>' || rs[i+1] == '&') {
				i++
			}
			dropNext = true
		case r == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j
		case r == '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[j+1]) {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf(`unterminated " in %q`, line)
			}
			i = j
		case r == '\\' && i+1 < len(rs):
			inWord = true
			i++
			cur.WriteRune(rs[i])
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	endCmd()
	return cmds, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
