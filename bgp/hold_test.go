package bgp

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Holds are files: written atomically, read back, removed; a damaged file
// still holds its service.
func TestHoldFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "holds")
	if h, err := ReadHolds(dir); err != nil || len(h) != 0 {
		t.Fatalf("missing directory: %v, %v; want no holds, no error", h, err)
	}
	since := time.Date(2025, 6, 2, 10, 4, 5, 0, time.UTC)
	if err := WriteHold(dir, APIServerService, Hold{Reason: "upgrading", Since: since}); err != nil {
		t.Fatal(err)
	}
	if err := WriteHold(dir, "../x", Hold{Reason: "r"}); err == nil {
		t.Error("a hold named ../x was written")
	}
	h, err := ReadHolds(dir)
	if err != nil || h[APIServerService] != (Hold{Reason: "upgrading", Since: since}) || len(h) != 1 {
		t.Fatalf("read back %+v, %v", h, err)
	}

	// Damaged and stray files.
	if err := os.WriteFile(HoldFile(dir, "load-balancers"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad name"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".kube-apiserver.tmp123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err = ReadHolds(dir)
	if err == nil || !strings.Contains(err.Error(), "is damaged (held anyway)") || !strings.Contains(err.Error(), `"bad name" is not a service name`) {
		t.Errorf("damaged files: %v", err)
	}
	if lb, ok := h["load-balancers"]; !ok || !strings.HasPrefix(lb.Reason, "damaged hold file ") {
		t.Errorf("a damaged hold file does not hold its service: %+v", h)
	}
	if len(h) != 2 {
		t.Errorf("holds %+v: want kube-apiserver and load-balancers", h)
	}

	for _, name := range []string{APIServerService, "load-balancers"} {
		if ok, err := RemoveHold(dir, name); !ok || err != nil {
			t.Errorf("removing %s: %v, %v", name, ok, err)
		}
	}
	if ok, err := RemoveHold(dir, APIServerService); ok || err != nil {
		t.Errorf("removing again: %v, %v; want false, nil", ok, err)
	}
}

func TestHoldChecks(t *testing.T) {
	for _, ok := range []string{"kube-apiserver", "load-balancers", "a", "svc_1.v2"} {
		if err := CheckServiceName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/b", "-a", ".hidden", "a b", strings.Repeat("a", 64)} {
		if err := CheckServiceName(bad); err == nil {
			t.Errorf("%q accepted as a service name", bad)
		}
	}
	for reason, want := range map[string]string{
		"":                       "the reason is empty",
		"two\nlines":             "spans several lines",
		strings.Repeat("x", 201): "is 201 bytes long: use at most 200",
		"upgrading to v1.37.2":   "",
	} {
		err := CheckHoldReason(reason)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("reason %q: %v, want %q", reason, err, want)
		}
	}
	cfg := &Config{Node: "n1", Services: []Service{{Name: "b"}, {Name: "a"}}}
	if err := UnknownService(cfg, "c"); err.Error() != `no such service "c" on n1: use one of a, b` {
		t.Errorf("UnknownService: %v", err)
	}
	if (&Config{}).HoldDirectory() != DefaultHoldDir || (&Config{HoldDir: "/x"}).HoldDirectory() != "/x" {
		t.Error("HoldDirectory")
	}
}

// The status table shows a held service and withdrawals not sent yet.
func TestStatusTableShowsHolds(t *testing.T) {
	since := time.Date(2025, 6, 2, 10, 4, 5, 0, time.UTC)
	s := &Status{Node: "n1", ASN: 1, RouterID: "198.18.0.11",
		Services: []ServiceStatus{
			{Name: APIServerService, VIPs: []string{"198.18.46.1"}, Reason: "held: upgrading", Held: &Hold{Reason: "upgrading", Since: since}},
			{Name: "load-balancers", VIPs: []string{"198.18.46.10"}, Healthy: true},
			{Name: "web", VIPs: []string{"198.18.46.11"}, Reason: "GET http://127.0.0.1/healthz: 503"},
		},
		Withdrawing: []Withdrawal{{Prefix: "198.18.46.1/32", Peers: []string{"core-a1 (198.18.32.1)"}}},
	}
	var b bytes.Buffer
	if err := WriteStatusTable(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kube-apiserver   held     198.18.46.1          held: upgrading (since " + since.Local().Format(time.DateTime) + ")\n",
		"load-balancers   yes      198.18.46.10         \n",
		"web              no       198.18.46.11         GET http://127.0.0.1/healthz: 503\n",
		"WITHDRAWING          NOT YET SENT TO\n198.18.46.1/32       core-a1 (198.18.32.1)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// The status table shows the LoadBalancer watch and its routes.
func TestStatusTableShowsLoadBalancers(t *testing.T) {
	at := time.Date(2025, 6, 2, 10, 4, 5, 0, time.UTC)
	s := &Status{Node: "n3", ASN: 1, RouterID: "198.18.34.10",
		LoadBalancers: &LoadBalancerStatus{Center: "dc2", CenterRole: "local-dr", Prefer: "production",
			Watching: true, Synced: true, Services: 2, Error: "connection refused", ErrorAt: at,
			Routes: []LoadBalancerRoute{
				{Prefix: "198.18.46.30/32", Service: "shop/web", Prepends: 1, Announced: true},
				{Prefix: "198.18.46.31/32", Service: "shop/batch", Prepends: 2},
			}},
	}
	var b bytes.Buffer
	if err := WriteStatusTable(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"LoadBalancer Services: watched, synced, 2 Service(s); center dc2 (local-dr), default preference production\n",
		"Last error at " + at.Local().Format(time.DateTime) + " (routes kept as last known): connection refused\n",
		"LOADBALANCER         PREPENDS  ANNOUNCED  SERVICE\n",
		"198.18.46.30/32      1         yes        shop/web\n",
		"198.18.46.31/32      2         no         shop/batch\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
