package shell

import (
	"os/exec"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "''",
		"etcd.service":        "etcd.service",
		"/usr/local/bin/etcd": "/usr/local/bin/etcd",
		"user:group":          "user:group",
		"a b":                 "'a b'",
		"it's":                `'it'\''s'`,
		"$HOME":               "'$HOME'",
		"~root":               "'~root'",
		"a;rm -rf /":          "'a;rm -rf /'",
		"`id`":                "'`id`'",
		"line\nbreak":         "'line\nbreak'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}

// roundTrip has /bin/sh print the quoted word back.
func roundTrip(t *testing.T, s string) string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(s)).Output()
	if err != nil {
		t.Fatalf("sh with %q: %v", Quote(s), err)
	}
	return string(out)
}

func TestQuoteRoundTripsThroughSh(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", "'''", `a\b`, "$(id) `id` $HOME *", "-n", "tab\there", "new\nline", "ünïcode"} {
		if got := roundTrip(t, s); got != s {
			t.Errorf("sh read %q back as %q", s, got)
		}
	}
}

func FuzzQuote(f *testing.F) {
	f.Add("it's $HOME")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		// A shell word cannot hold NUL; sh reads bytes, not runes.
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				return
			}
		}
		if !utf8.ValidString(s) {
			return
		}
		if got := roundTrip(t, s); got != s {
			t.Fatalf("sh read %q back as %q (quoted %q)", s, got, Quote(s))
		}
	})
}
