// Command bmc is the BMC power-status sweep benchmark (bench/bmc.sh): it
// starts N ipmi_sim BMCs on the lab addresses 198.18.52.1..N (sharing UDP
// port 623; ipmisim.LabAddr indices 1016 on, the benchmark's block, put on
// an interface of their own that is deleted at the end), describes them in
// an inventory that passes validation, and times one power-status sweep of
// all of them by
//
//   - tricenter bmc status (one process, pooled RMCP+ sessions, bounded
//     concurrency),
//   - a sequential "ipmitool -I lanplus -C 3 ... power status" loop,
//   - xargs -P16 ipmitool.
//
// Every sweep must see every BMC, and all three must agree on how many
// servers are powered on. It prints a side-by-side table with ratios.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
)

// benchPassword is the lab password of the simulated BMCs; it reaches
// ipmitool through IPMI_PASSWORD (-E) and tricenter through an env
// reference, never a command line.
const benchPassword = "bench-pw"

// labFirst is the first ipmisim.LabAddr index of the benchmark's block
// (198.18.52.0/24), apart from the test packages' blocks.
const labFirst = 4 * 254

func main() {
	n := flag.Int("n", 200, "number of BMCs (3 to 254)")
	runs := flag.Int("runs", 3, "sweeps per method; the best is reported")
	work := flag.String("work", ".cache/bench/bmc", "work directory")
	tricenter := flag.String("tricenter", "bin/tricenter", "tricenter binary")
	hook := flag.Bool("hook", true, "give the BMCs a chassis_control hook (power status then runs a program, as a real BMC asks its hardware)")
	flag.Parse()
	if err := run(*n, *runs, *work, *tricenter, *hook); err != nil {
		fmt.Fprintln(os.Stderr, "bench bmc:", err)
		os.Exit(1)
	}
}

type sweep struct {
	name string
	best time.Duration
	on   int
}

func run(n, runs int, work, tricenter string, hook bool) error {
	if n < 3 || n > 254 {
		return fmt.Errorf("-n %d: use 3 to 254 (an etcd member in each center)", n)
	}
	if err := ipmisim.Available(); err != nil {
		return err
	}
	for _, b := range []string{"ipmitool", "xargs", tricenter} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: %w", b, err)
		}
	}
	work, _ = filepath.Abs(work)
	_ = os.RemoveAll(filepath.Join(work, "bmcs"))
	if err := os.MkdirAll(filepath.Join(work, "bmcs"), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	idxs := make([]int, n)
	for i := range idxs {
		idxs[i] = labFirst + i
	}
	addrs, closeAddrs, err := ipmisim.LabAddrs(ctx, idxs...)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeAddrs(); err != nil {
			fmt.Fprintln(os.Stderr, "bench bmc:", err)
		}
	}()
	cfgs := make([]ipmisim.Config, n)
	hosts := make([]string, n)
	for i, addr := range addrs {
		cfgs[i] = ipmisim.Config{
			Name: fmt.Sprintf("b%03d", i), Address: addr, User: "admin", Password: benchPassword,
			Dir: filepath.Join(work, "bmcs"), NoHook: !hook, PoweredOn: i%2 == 0,
		}
		hosts[i] = addr.String()
	}
	fmt.Fprintf(os.Stderr, "Starting %d ipmi_sim BMCs\n", n)
	t0 := time.Now()
	bmcs, err := ipmisim.StartAll(ctx, cfgs, 8)
	if err != nil {
		return err
	}
	defer ipmisim.StopAll(bmcs)
	fmt.Fprintf(os.Stderr, "Started in %s\n", time.Since(t0).Round(time.Millisecond))
	// Without a hook ipmi_sim cannot change power: every BMC reports off.
	wantOn := (n + 1) / 2
	if !hook {
		wantOn = 0
	}

	inv := filepath.Join(work, "inventory.yaml")
	if err := os.WriteFile(inv, []byte(inventory(hosts)), 0o644); err != nil {
		return err
	}
	hostFile := filepath.Join(work, "hosts.txt")
	if err := os.WriteFile(hostFile, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	env := append(os.Environ(), "IPMI_PASSWORD="+benchPassword, "TRICENTER_BENCH_BMC_PW="+benchPassword)
	ipmitool := "ipmitool -I lanplus -C 3 -U admin -E"
	methods := []struct {
		name string
		cmd  []string
		on   func(out []byte) (int, int, error)
	}{
		{"tricenter bmc status (--concurrency 16)", []string{tricenter, "bmc", "status", "-f", inv, "-o", "json", "--log-level", "error"}, countJSON},
		{"tricenter bmc status (--concurrency 64)", []string{tricenter, "bmc", "status", "-f", inv, "-o", "json", "--log-level", "error", "--concurrency", "64"}, countJSON},
		{"sequential ipmitool loop", []string{"bash", "-c", `while read -r h; do ` + ipmitool + ` -H "$h" power status; done < "$0"`, hostFile}, countText},
		{"xargs -P16 ipmitool", []string{"bash", "-c", `xargs -P16 -I{} ` + ipmitool + ` -H {} power status < "$0"`, hostFile}, countText},
	}
	var res []sweep
	for _, m := range methods {
		s := sweep{name: m.name, best: time.Hour}
		for r := 0; r < runs; r++ {
			cmd := exec.CommandContext(ctx, m.cmd[0], m.cmd[1:]...)
			cmd.Env = env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			out, err := cmd.Output()
			d := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", m.name, err, tail(stderr.String()))
			}
			on, total, err := m.on(out)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if total != n || on != wantOn {
				return fmt.Errorf("%s saw %d BMCs, %d on; want %d, %d on\n%s", m.name, total, on, n, wantOn, tail(stderr.String()))
			}
			s.on = on
			if d < s.best {
				s.best = d
			}
		}
		fmt.Fprintf(os.Stderr, "%-42s best of %d: %s\n", m.name, runs, s.best.Round(time.Millisecond))
		res = append(res, s)
	}

	mode := "with a chassis_control hook (each status runs a program in the BMC)"
	if !hook {
		mode = "without a hook (ipmi_sim answers from memory)"
	}
	fmt.Printf("Power-status sweep of %d ipmi_sim BMCs %s, best of %d runs, %d on / %d off\n", n, mode, runs, wantOn, n-wantOn)
	fmt.Printf("%-42s %10s %12s %14s %14s\n", "method", "time", "per BMC", "vs sequential", "vs xargs -P16")
	seq, xargs := res[2].best, res[3].best
	for _, s := range res {
		fmt.Printf("%-42s %9.3fs %10.2fms %13.1fx %13.1fx\n", s.name, s.best.Seconds(),
			float64(s.best.Microseconds())/1000/float64(n), seq.Seconds()/s.best.Seconds(), xargs.Seconds()/s.best.Seconds())
	}
	fmt.Printf("goals: tricenter >= 20x the sequential loop and >= 2x xargs -P16 (default concurrency): %s\n",
		verdict(seq.Seconds()/res[0].best.Seconds() >= 20 && xargs.Seconds()/res[0].best.Seconds() >= 2))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func tail(s string) string {
	if len(s) > 1500 {
		s = s[len(s)-1500:]
	}
	return s
}

func countJSON(out []byte) (int, int, error) {
	var doc struct {
		Results []struct {
			Power string `json:"power"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, 0, err
	}
	on := 0
	for _, r := range doc.Results {
		if r.Error != "" {
			return 0, 0, fmt.Errorf("%s", r.Error)
		}
		if r.Power == "on" {
			on++
		}
	}
	return on, len(doc.Results), nil
}

func countText(out []byte) (int, int, error) {
	on, total := 0, 0
	for _, l := range strings.Split(string(out), "\n") {
		switch strings.TrimSpace(l) {
		case "Chassis Power is on":
			on++
			total++
		case "Chassis Power is off":
			total++
		}
	}
	return on, total, nil
}

// inventory describes the BMCs: racks of at most 40 servers, at least
// three, spread over the three centers; the first server of the first
// rack of each center is an etcd member, so that the inventory is valid.
func inventory(hosts []string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: tricenter.io/v1alpha1
kind: Cluster
metadata: {name: bmc-bench}
spec:
  sites: [{name: site-a}, {name: site-b}]
  centers:
    - {name: dc1, site: site-a, role: production, rttMs: {dc2: 1, dc3: 20}}
    - {name: dc2, site: site-a, role: local-dr, rttMs: {dc1: 1, dc3: 21}}
    - {name: dc3, site: site-b, role: remote-dr, rttMs: {dc1: 20, dc2: 21}}
  ssh: {user: root, keyFile: /dev/null}
  network: {podCIDR: 198.19.128.0/17, podMaskSize: 26, serviceCIDR: 198.19.64.0/18, loadBalancerPool: [198.19.32.0/24]}
  racks:
`)
	centers := []string{"dc1", "dc2", "dc3"}
	nracks := max(3, (len(hosts)+39)/40)
	size := (len(hosts) + nracks - 1) / nracks
	racks := map[int][]int{}
	for i := range hosts {
		racks[i/size] = append(racks[i/size], i)
	}
	keys := make([]int, 0, len(racks))
	for k := range racks {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, r := range keys {
		fmt.Fprintf(&b, "    - name: r%d\n      center: %s\n      subnet: 198.18.%d.0/24\n      tor: {name: r%d-tor, asn: %d, address: 198.18.%d.1}\n      servers:\n",
			r, centers[r%3], 220+r, r, 65200+r, 220+r)
		for _, i := range racks[r] {
			role := "worker"
			if r < 3 && i%size == 0 {
				role = "etcd"
			}
			fmt.Fprintf(&b, "        - {name: b%03d, roles: [%s], ssh: {address: 198.18.%d.%d}, bmc: {address: %s, user: admin, password: {env: TRICENTER_BENCH_BMC_PW}, cipherSuites: [17, 3]}}\n",
				i, role, 220+r, 10+i%size, hosts[i])
		}
	}
	return b.String()
}
