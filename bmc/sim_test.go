package bmc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// Address indices (ipmisim.LabAddr) of the BMC tests, all in this
// package's block 0-253 (198.18.48.0/24; the other packages have their
// own, see internal/ipmisim): 0-50 the fleet, 100-119 single-BMC tests,
// 230-235 peers that never answer or do not exist. Every test configures
// the addresses it uses with labAddrs (or startSims), on an interface of
// its own that its cleanup deletes.

// labAddrs configures the lab addresses of the indices for the test; it
// skips the test when that needs root.
func labAddrs(t *testing.T, idxs ...int) []netip.Addr {
	t.Helper()
	testenv.Need(t, ipmisim.LabAvailable())
	addrs, closeFn, err := ipmisim.LabAddrs(context.Background(), idxs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeFn(); err != nil {
			t.Error(err)
		}
	})
	return addrs
}

func needSim(t *testing.T) {
	t.Helper()
	testenv.Need(t, ipmisim.Available())
	testenv.RequireBinary(t, "ipmitool")
}

func testFRU(name string) *ipmisim.FRU {
	return &ipmisim.FRU{
		Manufacturer: "Tricenter Lab", Product: "TL-1000 Server", PartNumber: "P-1000",
		Version: "A1", Serial: "SN-" + name, AssetTag: "AT-" + name,
		BoardManufacturer: "Board Co", BoardProduct: "TLB-1", BoardSerial: "BS-" + name, BoardPartNumber: "BP-1",
		ChassisPartNumber: "CP-1", ChassisSerial: "CS-" + name,
		BoardMfgTime: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

// startSim starts one ipmi_sim at address index idx with the default
// sensors and a FRU; mutate may change the configuration first.
func startSim(t *testing.T, idx int, mutate func(*ipmisim.Config)) *ipmisim.BMC {
	t.Helper()
	return startSims(t, []int{idx}, func(_ int, c *ipmisim.Config) {
		if mutate != nil {
			mutate(c)
		}
	})[0]
}

func startSims(t *testing.T, idxs []int, mutate func(i int, c *ipmisim.Config)) []*ipmisim.BMC {
	t.Helper()
	needSim(t)
	dir := t.TempDir()
	addrs := labAddrs(t, idxs...)
	cfgs := make([]ipmisim.Config, len(idxs))
	for i, idx := range idxs {
		addr := addrs[i]
		name := fmt.Sprintf("srv%03d", idx)
		cfgs[i] = ipmisim.Config{
			Name: name, Address: addr, User: "admin", Password: "pw-" + name, Dir: dir,
			FRU: testFRU(name), Sensors: ipmisim.DefaultSensors(),
		}
		if mutate != nil {
			mutate(i, &cfgs[i])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bmcs, err := ipmisim.StartAll(ctx, cfgs, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipmisim.StopAll(bmcs) })
	return bmcs
}

func target(b *ipmisim.BMC, password string, suites ...int) Target {
	if len(suites) == 0 {
		suites = []int{17, 3}
	}
	return Target{Server: b.Name(), Address: b.Address().String(), Port: b.Port(),
		User: "admin", Password: password, CipherSuites: suites}
}

// fastOptions keep tests quick: no minimum interval, a short retry budget.
// The exchange timeout stays at 1s: ipmi_sim runs the hook (a fork) before
// it answers, which can take long on a loaded machine, and a resent power
// command would run the hook twice.
func fastOptions(log *slog.Logger) Options {
	return Options{MinInterval: -1, RetryBudget: 2 * time.Second, ExchangeTimeout: time.Second,
		ExchangeRetries: 1, PollInterval: 50 * time.Millisecond, Logger: log}
}

// logBuffer is a concurrency-safe slog sink for assertions on logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func ipmitool(t *testing.T, b *ipmisim.BMC, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := b.Ipmitool(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func setEvents(t *testing.T, b *ipmisim.BMC) []string {
	t.Helper()
	ev, err := b.SetEvents()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func mustNotLeak(t *testing.T, what, text, secret string) {
	t.Helper()
	if secret != "" && strings.Contains(text, secret) {
		t.Errorf("%s contains the password", what)
	}
}
