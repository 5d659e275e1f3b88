package kubeconfig

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// Limits of the user certificates the engine issues (tricenter kubeconfig
// --user, the provider's tricenter_kubeconfig with user).
const (
	// DefaultUserTTL is the CLI's default validity.
	DefaultUserTTL = 8 * time.Hour
	// MaxUserTTL is the longest validity issued without AllowLongTTL.
	MaxUserTTL = 24 * time.Hour
	// MinUserTTL is the shortest validity.
	MinUserTTL = time.Minute
	// MaxLongUserTTL is the longest validity at all (with AllowLongTTL):
	// a leaf's validity, never past the CA's expiry.
	MaxLongUserTTL = pki.LeafValidity
)

// SystemPrefix starts the users and groups Kubernetes reserves for
// itself: system:masters (every request allowed, whatever RBAC says),
// system:nodes and system:node:NAME (a kubelet's powers, the Node
// authorizer's), system:serviceaccount:NS:NAME and
// system:serviceaccounts[:NS] (a pod's identity), system:kube-*
// (the control plane's).
const SystemPrefix = "system:"

// ErrReservedIdentity is wrapped (by an *IdentityError) when a user or
// group is one of Kubernetes' or the cluster's own identities.
var ErrReservedIdentity = errors.New("reserved identity")

// ErrTTLTooLong and ErrTTLTooShort are wrapped (by a *TTLError) when a
// validity is out of range.
var (
	ErrTTLTooLong  = errors.New("validity too long")
	ErrTTLTooShort = errors.New("validity too short")
)

// IdentityError names a refused user or group.
type IdentityError struct {
	// Field is "user" or "group".
	Field string
	// Value is the refused name, Why what it is.
	Value, Why string
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("%s %q is reserved: %s", e.Field, e.Value, e.Why)
}

// Unwrap makes errors.Is(err, ErrReservedIdentity) true.
func (e *IdentityError) Unwrap() error { return ErrReservedIdentity }

// reservedUsers are the user names of the cluster's own client
// certificates: a user certificate with one of them would act as that
// component wherever RBAC binds it by name.
var reservedUsers = map[string]string{
	pki.AdminUser:            "it is the admin kubeconfig's user",
	pki.BreakGlassUser:       "it is the break-glass credential's user (system:masters)",
	pki.KubeletClientUser:    "it is the API server's client of the kubelets (bound to system:kubelet-api-admin)",
	pki.FrontProxyClientUser: "it is the API server's aggregation client",
}

// reserved says why name is reserved as a field ("user", "group"), or "".
func reserved(field, name string) string {
	if strings.HasPrefix(strings.ToLower(name), SystemPrefix) {
		switch lower := strings.ToLower(name); {
		case lower == pki.MastersGroup:
			return "system:masters bypasses RBAC: nothing can revoke what it grants"
		case lower == "system:nodes" || strings.HasPrefix(lower, "system:node:"):
			return "it is a kubelet's identity (system:nodes, system:node:NAME)"
		case strings.HasPrefix(lower, "system:serviceaccount"):
			return "it is a service account's identity (system:serviceaccount:NS:NAME, system:serviceaccounts)"
		}
		return "system: users and groups are Kubernetes' own identities"
	}
	if field == "group" && name == AdminGroup {
		return "it is the admin kubeconfig's group, bound to cluster-admin"
	}
	if field == "user" {
		return reservedUsers[name]
	}
	return ""
}

// CheckIdentity refuses a user certificate's user or groups when they are
// empty or, unless allowReserved, reserved: anything starting with
// system: (any case), the admin group, and the user names of the
// cluster's own client certificates. A refusal is an *IdentityError
// wrapping ErrReservedIdentity.
func CheckIdentity(user string, groups []string, allowReserved bool) error {
	if strings.TrimSpace(user) == "" {
		return errors.New("no user name")
	}
	if strings.TrimSpace(user) != user {
		return fmt.Errorf("user %q has leading or trailing spaces", user)
	}
	for _, g := range groups {
		if strings.TrimSpace(g) == "" {
			return fmt.Errorf("an empty group for user %q", user)
		}
		if strings.TrimSpace(g) != g {
			return fmt.Errorf("group %q has leading or trailing spaces", g)
		}
	}
	if allowReserved {
		return nil
	}
	if why := reserved("user", user); why != "" {
		return &IdentityError{Field: "user", Value: user, Why: why}
	}
	for _, g := range groups {
		if why := reserved("group", g); why != "" {
			return &IdentityError{Field: "group", Value: g, Why: why}
		}
	}
	return nil
}

// TTLError names a refused validity and the limit it crosses.
type TTLError struct {
	TTL, Limit time.Duration
	// TooShort: Limit is the minimum, not the maximum.
	TooShort bool
}

func (e *TTLError) Error() string {
	if e.TooShort {
		return fmt.Sprintf("a validity of %s is shorter than %s", FormatDuration(e.TTL), FormatDuration(e.Limit))
	}
	return fmt.Sprintf("a validity of %s is longer than %s", FormatDuration(e.TTL), FormatDuration(e.Limit))
}

// Unwrap makes errors.Is(err, ErrTTLTooLong) (or ErrTTLTooShort) true.
func (e *TTLError) Unwrap() error {
	if e.TooShort {
		return ErrTTLTooShort
	}
	return ErrTTLTooLong
}

// CheckTTL refuses a validity shorter than MinUserTTL, longer than
// MaxUserTTL unless allowLong, and longer than MaxLongUserTTL at all, with
// a *TTLError whose Limit is the limit crossed.
func CheckTTL(ttl time.Duration, allowLong bool) error {
	switch {
	case ttl < MinUserTTL:
		return &TTLError{TTL: ttl, Limit: MinUserTTL, TooShort: true}
	case ttl > MaxLongUserTTL:
		return &TTLError{TTL: ttl, Limit: MaxLongUserTTL}
	case ttl > MaxUserTTL && !allowLong:
		return &TTLError{TTL: ttl, Limit: MaxUserTTL}
	}
	return nil
}

// FormatDuration writes d without trailing zero units: 24h, 1h30m, 90s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
