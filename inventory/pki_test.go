package inventory_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestPKIValidate: spec.pki durations must parse, be positive, and
// renewBefore must be shorter than the leaf lifetime (the default one when
// only renewBefore is set); each error names its field.
func TestPKIValidate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pki        inventory.PKI
		path, want string // empty: valid
		renew      time.Duration
		life       time.Duration
	}{
		{name: "unset", renew: 720 * time.Hour, life: 8760 * time.Hour},
		{name: "lab minutes", pki: inventory.PKI{RenewBefore: "5m", LeafLifetime: "12m"}, renew: 5 * time.Minute, life: 12 * time.Minute},
		{name: "renew only", pki: inventory.PKI{RenewBefore: "1440h"}, renew: 1440 * time.Hour, life: 8760 * time.Hour},
		{name: "bad renew", pki: inventory.PKI{RenewBefore: "30d"}, path: "spec.pki.renewBefore", want: `"30d" is not a duration`},
		{name: "negative", pki: inventory.PKI{RenewBefore: "-1h"}, path: "spec.pki.renewBefore", want: "is not positive"},
		{name: "zero lifetime", pki: inventory.PKI{LeafLifetime: "0s"}, path: "spec.pki.leafLifetime", want: "is not positive"},
		{name: "renew not shorter", pki: inventory.PKI{RenewBefore: "10m", LeafLifetime: "10m"}, path: "spec.pki.renewBefore", want: "is not shorter than the leaf lifetime 10m"},
		{name: "renew past default lifetime", pki: inventory.PKI{RenewBefore: "9000h"}, path: "spec.pki.renewBefore", want: "not shorter than the leaf lifetime 8760h"},
		{name: "lifetime under default renew", pki: inventory.PKI{LeafLifetime: "24h"}, path: "spec.pki.renewBefore", want: "default 720h is not shorter than spec.pki.leafLifetime 24h"},
		{name: "seconds", pki: inventory.PKI{RenewBefore: "10s", LeafLifetime: "30s"}, path: "spec.pki.leafLifetime", want: "shorter than a minute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			c.Spec.PKI = tc.pki
			r := c.Validate(nil)
			if tc.path == "" {
				if !r.OK() {
					t.Fatal(r.Err())
				}
				if got := c.Spec.PKI.RenewBeforeDuration(); got != tc.renew {
					t.Errorf("RenewBeforeDuration = %s, want %s", got, tc.renew)
				}
				if got := c.Spec.PKI.LeafLifetimeDuration(); got != tc.life {
					t.Errorf("LeafLifetimeDuration = %s, want %s", got, tc.life)
				}
				return
			}
			var found bool
			for _, p := range r.Errors {
				if p.Path == tc.path && strings.Contains(p.Message, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want an error at %s containing %q, got %+v", tc.path, tc.want, r.Errors)
			}
		})
	}
}

// TestPKISerialization: an inventory without spec.pki serializes as
// before (no pki key in YAML or JSON), and the block reads back from YAML.
func TestPKISerialization(t *testing.T) {
	c := base()
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "pki:") || strings.Contains(string(j), `"pki"`) {
		t.Fatal("an unset spec.pki appears in the serialized inventory")
	}
	c.Spec.PKI = inventory.PKI{RenewBefore: "5m", LeafLifetime: "15m"}
	y, err = yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := inventory.Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Spec.PKI != c.Spec.PKI || parsed.Spec.PKI.RenewBeforeDuration() != 5*time.Minute {
		t.Fatalf("parsed %+v", parsed.Spec.PKI)
	}
}
