// Command nspawn-lab brings up the nspawn lab an inventory describes (one
// machine per server, a bridge per rack, the centers' RTTs) and keeps it
// running in the foreground until interrupted, then tears it down.
//
//	go run ./acceptance/cmd/nspawn-lab -f examples/inventory/nspawn-lab.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
)

func main() {
	file := flag.String("f", "examples/inventory/nspawn-lab.yaml", "lab inventory")
	rootfsOnly := flag.Bool("rootfs-only", false, "build (or find) the cached machine root filesystem and exit")
	noFRR := flag.Bool("no-frr", false, "route between the racks without FRR (inventories whose TORs have different ASNs)")
	flag.Parse()
	if *rootfsOnly {
		*file = ""
	}
	if err := run(*file, *noFRR); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

// run brings the lab of file up; without a file it only builds the root
// filesystem.
func run(file string, noFRR bool) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cache, err := nspawn.CacheDir()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, log)
	if err != nil {
		return err
	}
	if file == "" {
		fmt.Println(rootfs)
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	c, err := nspawn.ParseInventory(data, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	lab, err := nspawn.Up(ctx, nspawn.Config{Cluster: c, Rootfs: rootfs, NoFRR: noFRR,
		Dir: filepath.Join(cache, "nspawn", "machines", c.Metadata.Name), Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "Error tearing the lab down:", err)
		}
	}()
	// This machine plays the operator's workstation: the API VIP, services
	// and pods are reached through the lab's router.
	if err := lab.RouteClusterFromHost(ctx); err != nil {
		return err
	}
	fmt.Printf("Lab %s up in %v:\n", c.Metadata.Name, time.Since(start).Round(time.Millisecond))
	for _, m := range lab.Machines() {
		fmt.Printf("  %-14s %s\n", m.Name, m.Address)
	}
	if r := lab.Router(); r != nil {
		fmt.Printf("FRR router (every rack's TOR): vtysh --vty_socket %s -c 'show bgp ipv4 unicast summary'\n", r.Dir)
	}
	fmt.Printf("SSH key %s, known hosts %s. Ctrl-C to tear down.\n", c.Spec.SSH.KeyFile, c.Spec.SSH.KnownHosts)
	<-ctx.Done()
	return nil
}
