package acceptance

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// labBMCs starts one ipmi_sim BMC per node, on lab addresses from index
// first on (ipmisim.LabAddrs): a power off through it cuts the node's
// machine (nspawn.Machine.PowerOff), as a real BMC cuts a server's power;
// power on is accepted and does nothing (the tests start machines
// themselves). The BMCs stop at the test's end.
func labBMCs(t testing.TB, ctx context.Context, k *kubeLab, first int, nodes ...string) map[string]*ipmisim.BMC {
	t.Helper()
	idx := make([]int, len(nodes))
	for i := range nodes {
		idx[i] = first + i
	}
	addrs, closeAddrs, err := ipmisim.LabAddrs(ctx, idx...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeAddrs() })
	out := map[string]*ipmisim.BMC{}
	for i, node := range nodes {
		mach := k.lab.Machine(node)
		if mach == nil {
			t.Fatalf("no machine %s", node)
		}
		dir := filepath.Join(k.dir, "bmc-"+node)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		fifo, state := filepath.Join(dir, "power.fifo"), filepath.Join(dir, "power.state")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(state, []byte("on\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(fifo, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if op := strings.TrimSpace(sc.Text()); op == "off" || op == "soft-off" {
					if err := mach.PowerOff(ctx); err != nil {
						t.Errorf("power off %s: %v", node, err)
					}
					_ = os.WriteFile(state, []byte("off\n"), 0o644)
				}
			}
		}()
		req := func(op string) string {
			return fmt.Sprintf(`timeout 5 sh -c 'echo %s > "$1"' sh %s`, op, shell.Quote(fifo))
		}
		bmc, err := ipmisim.Start(ctx, ipmisim.Config{Name: node, Address: addrs[i], User: "admin", Password: "lab-secret", Dir: dir,
			Power: ipmisim.Power{On: ":", Off: req("off"), SoftOff: req("soft-off"), Reset: ":",
				Status: fmt.Sprintf(`read -r v < %s && [ "$v" = on ]`, shell.Quote(state))}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = bmc.Stop()
			_ = f.Close()
			wg.Wait()
		})
		out[node] = bmc
	}
	return out
}
