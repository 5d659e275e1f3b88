package inventory

import (
	"regexp"
	"strconv"
	"strings"
)

var (
	reNotFound = regexp.MustCompile(`^(line \d+): field (\S+) not found in type inventory\.(\w+)$`)
	reCannot   = regexp.MustCompile(`^(line \d+): cannot unmarshal !!(\w+) ` + "`" + `?([^` + "`" + `]*)` + "`" + `? into (\S+)$`)
)

// rewriteTypeError turns yaml.v3's Go-flavoured messages into ones that
// name the inventory's own vocabulary.
func rewriteTypeError(s string) string {
	if m := reNotFound.FindStringSubmatch(s); m != nil {
		return m[1] + ": unknown field " + strings.TrimSpace(m[2]) + " in " + lowerFirst(m[3]) + ": check the spelling against the documented fields"
	}
	if m := reCannot.FindStringSubmatch(s); m != nil {
		want := m[4]
		switch {
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.HasPrefix(want, "map["), strings.HasPrefix(want, "inventory."):
			want = "a mapping"
		case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "uint"), strings.HasPrefix(want, "float"):
			want = "a number"
		case want == "bool" || want == "*bool":
			want = "true or false"
		case want == "string":
			want = "a string"
		}
		got := "a " + m[2]
		if v := strings.TrimSpace(m[3]); v != "" {
			got = strconv.Quote(v)
		}
		return m[1] + ": expected " + want + ", found " + got
	}
	return s
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
