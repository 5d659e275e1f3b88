package phase

import (
	"strconv"
	"time"
)

// ClockSkew is how far a host's clock lies outside [before, after], the
// local times around the command that printed remoteNow (`date +%s.%N`);
// zero when it lies inside or remoteNow does not parse.
func ClockSkew(before, after time.Time, remoteNow string) time.Duration {
	now, err := strconv.ParseFloat(remoteNow, 64)
	if err != nil {
		return 0
	}
	remote := time.Unix(0, int64(now*1e9))
	switch {
	case remote.Before(before):
		return before.Sub(remote)
	case remote.After(after):
		return remote.Sub(after)
	}
	return 0
}
