package main

import (
	"bytes"
	"strings"
	"testing"
)

func runAgentCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestSharedFlags: the flags every tricenter command line shares
// (internal/cliflags) hold here too: -o is table or json and completes
// them, --log-format and --log-level are checked before the agent starts.
func TestSharedFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"status", "-o", "yaml"}, `Error: --output "yaml": use table or json`},
		{[]string{"run", "--log-format", "xml"}, `Error: --log-format "xml": use text or json`},
		{[]string{"run", "--log-level", "loud"}, `Error: --log-level "loud": use debug, info, warn or error`},
	} {
		_, errOut, code := runAgentCLI(t, tc.args...)
		if code != 1 || strings.TrimSpace(errOut) != tc.err {
			t.Errorf("%v: exit %d, stderr %q, want 1 and %q", tc.args, code, errOut, tc.err)
		}
	}
	out, errOut, code := runAgentCLI(t, "__complete", "status", "-o", "")
	if code != 0 || !strings.HasPrefix(out, "table\njson\n:4\n") {
		t.Fatalf("completing -o: exit %d, %q %q", code, out, errOut)
	}
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	for name, def := range map[string]string{"log-format": "text", "log-level": "info"} {
		if f := root.PersistentFlags().Lookup(name); f == nil || f.DefValue != def {
			t.Errorf("--%s: %+v, want default %q", name, f, def)
		}
	}
}
