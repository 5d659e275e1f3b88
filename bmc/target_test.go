package bmc

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestTargetFromHost(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRICENTER_TEST_ENV_PW", "env-secret")
	host := func(b *inventory.BMC) inventory.Host {
		return inventory.Host{Server: &inventory.Server{Name: "s1", BMC: b}, Path: "spec.racks[0].servers[1]"}
	}
	good, err := TargetFromHost(host(&inventory.BMC{Address: "10.0.0.5", User: "admin", Password: inventory.SecretRef{File: pwFile}}))
	if err != nil {
		t.Fatal(err)
	}
	if good.Password != "file-secret" || good.Port != 623 || len(good.CipherSuites) != 2 || good.CipherSuites[0] != 17 {
		t.Errorf("defaults not applied: %v %d %v", good, good.Port, good.CipherSuites)
	}
	// The password never shows in String, %v, %#v or slog.
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "target", good)
	for _, s := range []string{good.String(), good.GoString(), logged.String()} {
		if strings.Contains(s, "file-secret") {
			t.Errorf("password shown in %q", s)
		}
	}
	for _, tc := range []struct {
		b    *inventory.BMC
		want string
	}{
		{nil, "spec.racks[0].servers[1].bmc is not set"},
		{&inventory.BMC{User: "admin", Password: inventory.SecretRef{Env: "TRICENTER_TEST_ENV_PW"}}, "bmc.address is empty"},
		{&inventory.BMC{Address: "10.0.0.5", Password: inventory.SecretRef{Env: "TRICENTER_TEST_ENV_PW"}}, "bmc.user is empty"},
		{&inventory.BMC{Address: "10.0.0.5", User: "admin", Password: inventory.SecretRef{Env: "TRICENTER_TEST_UNSET_PW"}}, "TRICENTER_TEST_UNSET_PW is not set"},
		{&inventory.BMC{Address: "10.0.0.5", User: "admin", Password: inventory.SecretRef{File: filepath.Join(dir, "missing")}}, "bmc.password"},
		{&inventory.BMC{Address: "10.0.0.5", User: "admin", Password: inventory.SecretRef{Env: "TRICENTER_TEST_ENV_PW"}, CipherSuites: []int{0}}, "cipherSuites[0] is 0: cipher suite 0 has no authentication"},
		{&inventory.BMC{Address: "10.0.0.5", User: "admin", Password: inventory.SecretRef{Env: "TRICENTER_TEST_ENV_PW"}, CipherSuites: []int{17, 2}}, "cipherSuites[1] is 2"},
		{&inventory.BMC{Address: "10.0.0.5", User: strings.Repeat("u", 17), Password: inventory.SecretRef{Env: "TRICENTER_TEST_ENV_PW"}}, "1 to 16 bytes"},
	} {
		_, err := TargetFromHost(host(tc.b))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "s1: ") {
			t.Errorf("%+v: %v, want ErrConfig starting with the server and containing %q", tc.b, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "env-secret") {
			t.Errorf("password in %v", err)
		}
	}
	long := good
	long.Password = strings.Repeat("p", 21)
	if err := long.Validate(); !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), long.Password) {
		t.Errorf("21-byte password: %v", err)
	}
}

// TestOptionsDefaultsIdempotent: a pool applies the defaults, then each
// client again; "none" (negative) must survive both.
func TestOptionsDefaultsIdempotent(t *testing.T) {
	o := Options{MinInterval: -1, RetryBudget: -1, ExchangeRetries: -1}
	twice := o.withDefaults().withDefaults()
	if twice.MinInterval > 0 || twice.RetryBudget > 0 || twice.ExchangeRetries > 0 {
		t.Errorf("none became a default: %+v", twice)
	}
	z := Options{}.withDefaults().withDefaults()
	if z.MinInterval != DefaultMinInterval || z.RetryBudget != DefaultRetryBudget || z.ExchangeRetries != DefaultExchangeRetries || z.Concurrency != DefaultConcurrency {
		t.Errorf("defaults: %+v", z)
	}
}
