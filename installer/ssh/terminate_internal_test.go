package ssh

import (
	"strings"
	"testing"
)

// The run id AsRoot adds is found again by runID, and the line shown in
// messages is the one without it; other lines carry none.
func TestRunID(t *testing.T) {
	for _, user := range []string{"root", "deploy"} {
		c := &Client{ep: Endpoint{User: user}}
		cmd := "systemctl restart 'a b'.service"
		line := c.AsRoot(cmd)
		id, shown := runID(line)
		if len(id) != runIDLen || !strings.Contains(line, runVar+"="+id+"; ") {
			t.Fatalf("%s: run id %q not found in %q", user, id, line)
		}
		want := cmd
		if user != "root" {
			want = sudoPrefix + `sh -c 'systemctl restart '\''a b'\''.service'`
		}
		if shown != want {
			t.Errorf("%s: shown %q, want %q", user, shown, want)
		}
		if again, _ := runID(c.AsRoot(cmd)); again == id {
			t.Errorf("%s: two AsRoot lines share the run id %s", user, id)
		}
		if strings.Contains(line, "\n") {
			t.Errorf("%s: the line has a newline: %q", user, line)
		}
	}
	for _, line := range []string{
		"uname -r",
		sudoPrefix + "sh -c 'true'",
		"export " + runVar + "=abc; true",
		"export " + runVar + "=" + strings.Repeat("g", runIDLen) + "; true",
		"export " + runVar + "=" + strings.Repeat("a", runIDLen) + " true",
		"echo; export " + runVar + "=" + strings.Repeat("a", runIDLen) + "; true",
	} {
		if id, shown := runID(line); id != "" || shown != line {
			t.Errorf("runID(%q) = %q, %q; want none", line, id, shown)
		}
	}
}
