package phase

import (
	"testing"
	"time"
)

func TestClockSkew(t *testing.T) {
	before := time.Unix(1000, 0)
	after := before.Add(2 * time.Second)
	for _, tc := range []struct {
		remote string
		want   time.Duration
	}{
		{"1001.5", 0},
		{"997", 3 * time.Second},
		{"1005.25", 3250 * time.Millisecond},
		{"not a time", 0},
	} {
		if got := ClockSkew(before, after, tc.remote); got != tc.want {
			t.Errorf("remote %s: skew %v, want %v", tc.remote, got, tc.want)
		}
	}
}
