package inventory

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Problem is one finding of Validate: where (a field path and, when known,
// the line), what is wrong and how to fix it.
type Problem struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", p.Path, p.Line, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Path, p.Message)
}

// Result collects every problem Validate found.
type Result struct {
	Errors   []Problem `json:"errors"`
	Warnings []Problem `json:"warnings"`
	lines    *Lines
}

// OK reports whether there are no errors (warnings are allowed).
func (r *Result) OK() bool { return len(r.Errors) == 0 }

// Err returns nil when OK, otherwise an error listing every error.
func (r *Result) Err() error {
	if r.OK() {
		return nil
	}
	msgs := make([]string, len(r.Errors))
	for i, p := range r.Errors {
		msgs[i] = p.String()
	}
	return fmt.Errorf("%w: %d error(s):\n  %s", ErrInvalid, len(r.Errors), strings.Join(msgs, "\n  "))
}

// ErrInvalid is wrapped by Result.Err.
var ErrInvalid = errors.New("invalid inventory")

func (r *Result) errorf(path, format string, args ...any) {
	r.Errors = append(r.Errors, Problem{Path: path, Line: r.lines.Line(path), Message: fmt.Sprintf(format, args...)})
}

func (r *Result) warnf(path, format string, args ...any) {
	r.Warnings = append(r.Warnings, Problem{Path: path, Line: r.lines.Line(path), Message: fmt.Sprintf(format, args...)})
}

// sort orders problems by line, then path, so output is stable.
func (r *Result) sort() {
	less := func(ps []Problem) func(i, j int) bool {
		return func(i, j int) bool {
			if ps[i].Line != ps[j].Line {
				return ps[i].Line < ps[j].Line
			}
			return ps[i].Path < ps[j].Path
		}
	}
	sort.SliceStable(r.Errors, less(r.Errors))
	sort.SliceStable(r.Warnings, less(r.Warnings))
}
