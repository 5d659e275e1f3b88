package kubeconfig

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// TestCheckIdentityRefusesReserved: every system: form, as user or group
// and in any case, the admin group and the components' user names are
// refused naming the field and the value; allowReserved lets each of them
// through; ordinary names pass.
func TestCheckIdentityRefusesReserved(t *testing.T) {
	for _, tc := range []struct {
		user   string
		groups []string
		field  string
		value  string
		why    string
	}{
		{"alice", []string{"system:masters"}, "group", "system:masters", "bypasses RBAC"},
		{"alice", []string{"platform", "System:Masters"}, "group", "System:Masters", "bypasses RBAC"},
		{"alice", []string{"system:nodes"}, "group", "system:nodes", "kubelet"},
		{"system:node:dc1-w01", []string{"system:nodes"}, "user", "system:node:dc1-w01", "kubelet"},
		{"system:serviceaccount:kube-system:default", nil, "user", "system:serviceaccount:kube-system:default", "service account"},
		{"alice", []string{"system:serviceaccounts"}, "group", "system:serviceaccounts", "service account"},
		{"alice", []string{"system:serviceaccounts:kube-system"}, "group", "system:serviceaccounts:kube-system", "service account"},
		{"alice", []string{"system:authenticated"}, "group", "system:authenticated", "Kubernetes' own"},
		{"system:kube-controller-manager", nil, "user", "system:kube-controller-manager", "Kubernetes' own"},
		{"system:anonymous", nil, "user", "system:anonymous", "Kubernetes' own"},
		{"system:", nil, "user", "system:", "Kubernetes' own"},
		{"alice", []string{AdminGroup}, "group", AdminGroup, "cluster-admin"},
		{pki.AdminUser, nil, "user", pki.AdminUser, "admin kubeconfig"},
		{pki.KubeletClientUser, nil, "user", pki.KubeletClientUser, "kubelets"},
		{pki.FrontProxyClientUser, nil, "user", pki.FrontProxyClientUser, "aggregation"},
	} {
		err := CheckIdentity(tc.user, tc.groups, false)
		var ie *IdentityError
		if !errors.Is(err, ErrReservedIdentity) || !errors.As(err, &ie) || ie.Field != tc.field || ie.Value != tc.value {
			t.Errorf("user %q groups %q: %v, want a refusal of %s %q", tc.user, tc.groups, err, tc.field, tc.value)
			continue
		}
		if want := tc.field + ` "` + tc.value + `" is reserved: `; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("user %q groups %q: %q, want %q... %q", tc.user, tc.groups, err, want, tc.why)
		}
		if err := CheckIdentity(tc.user, tc.groups, true); err != nil {
			t.Errorf("user %q groups %q allowed: %v", tc.user, tc.groups, err)
		}
	}
	for _, ok := range []struct {
		user   string
		groups []string
	}{
		{"alice", nil},
		{"alice", []string{"platform", "oncall"}},
		{"ci:deployer", []string{"tricenter:readers", "systems"}},
		{"my-system:masters", []string{"team-system:masters"}}, // only a prefix is Kubernetes'
		{pki.AdminUser + "-2", nil},
		{AdminGroup, nil}, // a user may be called so; only the group is bound
	} {
		if err := CheckIdentity(ok.user, ok.groups, false); err != nil {
			t.Errorf("user %q groups %q refused: %v", ok.user, ok.groups, err)
		}
	}
}

// TestCheckIdentityRefusesMalformed: an empty user or group, or one with
// spaces around it, is refused whatever allowReserved says.
func TestCheckIdentityRefusesMalformed(t *testing.T) {
	for _, tc := range []struct {
		user   string
		groups []string
		want   string
	}{
		{"", nil, "no user name"},
		{"  ", nil, "no user name"},
		{" alice", nil, `user " alice" has leading or trailing spaces`},
		{"alice", []string{""}, `an empty group for user "alice"`},
		{"alice", []string{"system:masters "}, `group "system:masters " has leading or trailing spaces`},
	} {
		for _, allow := range []bool{false, true} {
			err := CheckIdentity(tc.user, tc.groups, allow)
			if err == nil || err.Error() != tc.want || errors.Is(err, ErrReservedIdentity) {
				t.Errorf("user %q groups %q (allow %v): %v, want %q", tc.user, tc.groups, allow, err, tc.want)
			}
		}
	}
}

// TestCheckTTL: at most 24h by default; up to a leaf's validity with
// allowLong, never more; at least a minute; the error names the limit.
func TestCheckTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl       time.Duration
		allowLong bool
		want      string // "" accepted
		limit     time.Duration
	}{
		{time.Minute, false, "", 0},
		{8 * time.Hour, false, "", 0},
		{24 * time.Hour, false, "", 0},
		{24*time.Hour + time.Second, false, "a validity of 24h0m1s is longer than 24h", MaxUserTTL},
		{48 * time.Hour, false, "a validity of 48h is longer than 24h", MaxUserTTL},
		{48 * time.Hour, true, "", 0},
		{pki.LeafValidity, true, "", 0},
		{pki.LeafValidity + time.Hour, true, "a validity of 8761h is longer than 8760h", MaxLongUserTTL},
		{pki.LeafValidity + time.Hour, false, "a validity of 8761h is longer than 8760h", MaxLongUserTTL},
		{59 * time.Second, false, "a validity of 59s is shorter than 1m", MinUserTTL},
		{0, true, "a validity of 0s is shorter than 1m", MinUserTTL},
		{-time.Hour, false, "a validity of -1h is shorter than 1m", MinUserTTL},
	} {
		err := CheckTTL(tc.ttl, tc.allowLong)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v (allowLong %v): %v", tc.ttl, tc.allowLong, err)
			}
			continue
		}
		var te *TTLError
		if err == nil || err.Error() != tc.want || !errors.As(err, &te) || te.Limit != tc.limit {
			t.Errorf("%v (allowLong %v): %v, want %q (limit %v)", tc.ttl, tc.allowLong, err, tc.want, tc.limit)
			continue
		}
		if short := tc.limit == MinUserTTL; errors.Is(err, ErrTTLTooShort) != short || errors.Is(err, ErrTTLTooLong) == short {
			t.Errorf("%v: %v wraps the wrong sentinel", tc.ttl, err)
		}
	}
	if MaxUserTTL != 24*time.Hour || MaxLongUserTTL != pki.LeafValidity || DefaultUserTTL > MaxUserTTL {
		t.Fatalf("limits: default %v, max %v, long max %v", DefaultUserTTL, MaxUserTTL, MaxLongUserTTL)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 30 * time.Second: "30s",
		time.Hour + time.Second: "1h0m1s", 0: "0s", 8760 * time.Hour: "8760h",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
