package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeQuery answers waitGone's polls from a script of counts and errors,
// for the unit test of the wait's logic (the benchmark itself asks FRR).
type fakeQuery struct {
	counts []int
	errs   []error
	calls  int
}

func (f *fakeQuery) query() (int, error) {
	i := min(f.calls, len(f.counts)-1)
	f.calls++
	return f.counts[i], f.errs[i]
}

func TestWaitGone(t *testing.T) {
	down := errors.New("vtysh: bgpd is not running")
	for _, tc := range []struct {
		name      string
		counts    []int
		errs      []error
		wantErr   string // "" when the route must be measured as gone
		wantCalls int
	}{
		{"gone at once", []int{0}, []error{nil}, "", 1},
		{"gone after two polls", []int{2, 1, 0}, []error{nil, nil, nil}, "", 3},
		{"query fails at once", []int{0}, []error{down}, "bgpd is not running", 1},
		{"query fails while waiting", []int{1, 0}, []error{nil, down}, "a failed query is not a withdrawn route", 2},
		{"never gone", []int{1}, []error{nil}, "still 1 left after", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeQuery{counts: tc.counts, errs: tc.errs}
			_, err := waitGone(50*time.Millisecond, time.Millisecond, f.query)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("waitGone: %v, want the route measured as gone", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("waitGone: %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.wantCalls > 0 && f.calls != tc.wantCalls {
				t.Errorf("%d queries, want %d", f.calls, tc.wantCalls)
			}
			if tc.wantErr != "" && errors.Is(tc.errs[len(tc.errs)-1], down) && !errors.Is(err, down) {
				t.Errorf("the query's error is not wrapped: %v", err)
			}
		})
	}
}
