package node

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckCgroup(t *testing.T) {
	no, yes := ptr(false), ptr(true)
	for _, tc := range []struct {
		name   string
		fsType string
		fail   *bool
		err    string
	}{
		{"v2", "cgroup2fs", nil, ""},
		{"v2, v1 allowed", "cgroup2fs", no, ""},
		{"v2, v1 refused", "cgroup2fs", yes, ""},
		{"v1 by default", "tmpfs", nil, "spec.kubernetes.failCgroupV1: false"},
		{"v1 refused", "tmpfs", yes, "/sys/fs/cgroup is tmpfs"},
		{"v1 allowed", "tmpfs", no, ""},
		{"unknown", "", no, "printed nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCgroup(tc.fsType, tc.fail)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("CheckCgroup(%q, %v) = %v, want nil", tc.fsType, tc.fail, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("CheckCgroup(%q, %v) = %v, want an error with %q", tc.fsType, tc.fail, err, tc.err)
			}
			if tc.fsType != "" && (!errors.Is(err, errCgroupV1) || !strings.Contains(err.Error(), FieldFailCgroupV1)) {
				t.Errorf("error %v does not name cgroup v1 and %s", err, FieldFailCgroupV1)
			}
		})
	}
}
