package phase

import (
	"strings"
	"testing"
)

// A listing that failed anywhere or did not end is refused as a whole
// (every file is then checked in its own session); a name sha256sum had
// to escape, or a file it did not hash, is left to its own session.
func TestParseSnapshot(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	good := "dir /etc/k\ne f 644 root:root 3 /etc/k/a b\ne f 600 root:root 3 /etc/k/big\ne l 777 root:root 4 /etc/k/l\n" +
		sum + "  /etc/k/a b\n\\" + sum + "  /etc/k/odd\\nname\nnodir /etc/x\nother /etc/y\nend\n"
	s, err := parseSnapshot(good)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := s.files["/etc/k/a b"]; !ok || f.SHA256 != sum || f.Mode != 0o644 || f.Owner != "root:root" || f.Size != 3 {
		t.Errorf("the file with a space: %+v %v", f, ok)
	}
	if _, ok := s.files["/etc/k/big"]; ok {
		t.Error("a file without its digest is trusted")
	}
	if s.kind["/etc/k/l"] != "l" || !s.dirs["/etc/k"] || s.dirs["/etc/x"] {
		t.Errorf("kinds %v dirs %v", s.kind, s.dirs)
	}
	if _, ok := s.dirs["/etc/y"]; ok {
		t.Error("a root that is not a directory counts as listed")
	}
	for name, out := range map[string]string{
		"a find that failed": "dir /etc/k\nerror /etc/k\nend\n",
		"cut short":          "dir /etc/k\ne f 644 root:root 3 /etc/k/a\n",
		"a stray line":       "dir /etc/k\nsomething else\nend\n",
		"a short entry":      "dir /etc/k\ne f 644 /etc/k/a\nend\n",
		"a cut digest":       "dir /etc/k\n" + strings.Repeat("cd", 30) + "  /etc/k/key\nend\n",
	} {
		_, err := parseSnapshot(out)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "cdcd") {
			t.Errorf("%s: the error shows the line's digest: %v", name, err)
		}
	}
}
