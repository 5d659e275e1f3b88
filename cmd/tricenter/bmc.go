package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// bmcFlags are the flags every "tricenter bmc" subcommand takes.
type bmcFlags struct {
	file, output                  string
	centers, racks, roles, names  []string
	concurrency                   int
	minInterval, retryBudget      time.Duration
	exchangeTimeout, wait, budget time.Duration
	uefi, persistent              bool
	all, yes                      bool
}

func newBMCCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bmc",
		Short: "Power, boot device and hardware inventory through the servers' BMCs (IPMI 2.0)",
		Long: `Drive the BMCs of the servers in an inventory over IPMI 2.0 (RMCP+, cipher
suites from bmc.cipherSuites, default 17 then 3). Select servers with
--center, --rack, --role and --server (repeatable). status, on, pxe, disk and
inventory select every server when none is named; off, soft-off, cycle and
reset need a selection or --all, and ask for confirmation (or --yes) before
taking more than one server down. Every server gets a result; the exit
status is 1 when any server failed.`,
	}
	type sub struct {
		name, short string
		op          bmc.Operation
	}
	for _, s := range []sub{
		{"status", "Show the power state", bmc.OpStatus},
		{"on", "Power on (no-op when on)", bmc.OpOn},
		{"off", "Power off hard (no-op when off)", bmc.OpOff},
		{"soft-off", "Ask the OS to shut down (ACPI soft off)", bmc.OpSoftOff},
		{"cycle", "Power cycle (powers on a server that is off)", bmc.OpCycle},
		{"reset", "Hard reset (powers on a server that is off)", bmc.OpReset},
		{"pxe", "Boot from the network next time", bmc.OpPXE},
		{"disk", "Boot from the disk next time", bmc.OpDisk},
		{"inventory", "Read device ID, FRU (serial, model) and sensors", bmc.OpInventory},
	} {
		cmd.AddCommand(newBMCOpCmd(g, s.name, s.short, s.op))
	}
	return cmd
}

func newBMCOpCmd(g *globals, name, short string, op bmc.Operation) *cobra.Command {
	f := &bmcFlags{}
	cmd := &cobra.Command{
		Use:   name + " -f FILE",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBMC(cmd.Context(), g, f, op, cmd.InOrStdin())
		},
	}
	addInventoryFlag(cmd, &f.file)
	cliflags.AddOutput(cmd, &f.output)
	fl := cmd.Flags()
	fl.StringSliceVar(&f.centers, "center", nil, "select servers in these centers")
	fl.StringSliceVar(&f.racks, "rack", nil, "select servers in these racks")
	fl.StringSliceVar(&f.roles, "role", nil, "select servers with these roles (etcd, control-plane, worker)")
	fl.StringSliceVar(&f.names, "server", nil, "select these servers by name")
	fl.IntVar(&f.concurrency, "concurrency", bmc.DefaultConcurrency, "BMCs talked to at once")
	fl.DurationVar(&f.minInterval, "min-interval", bmc.DefaultMinInterval, "least time between two commands to one BMC (0: none)")
	fl.DurationVar(&f.retryBudget, "retry-budget", bmc.DefaultRetryBudget, "time one command may spend retrying timeouts and busy answers (0: no retries)")
	fl.DurationVar(&f.exchangeTimeout, "exchange-timeout", bmc.DefaultExchangeTimeout, "wait for one BMC answer before resending")
	fl.DurationVar(&f.budget, "timeout", 10*time.Minute, "overall deadline")
	switch op {
	case bmc.OpOn, bmc.OpOff, bmc.OpSoftOff, bmc.OpCycle, bmc.OpReset:
		fl.DurationVar(&f.wait, "wait", time.Minute, "wait this long for the resulting power state (0: do not wait)")
		if takesDown(op) {
			fl.BoolVar(&f.all, "all", false, "every server of the inventory (required when none is selected)")
			fl.BoolVarP(&f.yes, "yes", "y", false, "take more than one server down without asking for confirmation")
		}
	case bmc.OpPXE, bmc.OpDisk:
		fl.BoolVar(&f.uefi, "uefi", false, "UEFI boot (default: legacy BIOS boot)")
		fl.BoolVar(&f.persistent, "persistent", false, "keep the boot device for every boot (default: next boot only)")
	}
	return cmd
}

// takesDown: the operations that power servers off, if only for a moment.
func takesDown(op bmc.Operation) bool {
	switch op {
	case bmc.OpOff, bmc.OpSoftOff, bmc.OpCycle, bmc.OpReset:
		return true
	}
	return false
}

// powerOffWords are how the confirmation of op reads: what happens to the
// servers, and the question.
func powerOffWords(op bmc.Operation) (what, question string) {
	switch op {
	case bmc.OpSoftOff:
		return "asked to shut down (ACPI soft off)", "Shut down"
	case bmc.OpCycle:
		return "power-cycled (off, then on)", "Power-cycle"
	case bmc.OpReset:
		return "hard reset", "Reset"
	}
	return "powered off hard", "Power off"
}

func runBMC(ctx context.Context, g *globals, f *bmcFlags, op bmc.Operation, in io.Reader) error {
	if err := cliflags.CheckOutput(f.output); err != nil {
		return err
	}
	selected := len(f.centers)+len(f.racks)+len(f.roles)+len(f.names) > 0
	switch {
	case takesDown(op) && f.all && selected:
		return fmt.Errorf("--all selects every server: leave out --center, --rack, --role and --server, or --all")
	case takesDown(op) && !f.all && !selected:
		return fmt.Errorf("bmc %s takes servers down and none is selected: name servers, racks, a center, or --all (--server, --rack, --center, --role, --all)", op)
	}
	if f.concurrency < 1 {
		return fmt.Errorf("--concurrency %d: use 1 or more", f.concurrency)
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	c, err := g.loadInventory(f.file)
	if err != nil {
		return err
	}
	sel := inventory.Selector{Centers: f.centers, Racks: f.racks, Servers: f.names}
	for _, r := range f.roles {
		sel.Roles = append(sel.Roles, inventory.Role(r))
	}
	hosts, err := c.Select(sel)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		return fmt.Errorf("the selection matches no server")
	}
	if takesDown(op) && len(hosts) > 1 && !f.yes {
		what, q := powerOffWords(op)
		fmt.Fprintf(g.stderr, "bmc %s: these %s will be %s:\n", op, countServers(len(hosts)), what)
		writeGoingDark(g.stderr, hosts, func(h inventory.Host) string {
			var roles []string
			for _, r := range h.Roles {
				roles = append(roles, string(r))
			}
			return strings.Join(roles, ", ")
		})
		ok, err := confirm(ctx, g.stderr, in, fmt.Sprintf("%s these %s?", q, countServers(len(hosts))))
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: fmt.Errorf("not confirmed: no server was touched")}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, f.budget)
	defer cancel()
	// In bmc.Options zero means "default"; on the command line 0 means none.
	noneIfZero := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	pool := bmc.NewPool(bmc.Options{
		MinInterval: noneIfZero(f.minInterval), RetryBudget: noneIfZero(f.retryBudget), ExchangeTimeout: f.exchangeTimeout,
		Concurrency: f.concurrency, Logger: log,
	})
	defer pool.Close(context.WithoutCancel(ctx))
	res := pool.RunHosts(ctx, hosts, bmc.Request{Op: op, Wait: f.wait, UEFI: f.uefi, Persistent: f.persistent})

	if f.output == "json" {
		if err := cliflags.WriteJSON(g.stdout, struct {
			Operation bmc.Operation `json:"operation"`
			Results   []bmc.Result  `json:"results"`
		}{op, res}); err != nil {
			return err
		}
	} else {
		writeBMCTable(g.stdout, op, res)
	}
	failed := 0
	for _, r := range res {
		if r.Err != nil {
			failed++
			if f.output != "json" {
				fmt.Fprintf(g.stderr, "%v\n", r.Err)
			}
		}
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s failed on %d of %d servers", op, failed, len(res))}
	}
	return nil
}

func writeBMCTable(w io.Writer, op bmc.Operation, res []bmc.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	result := func(r bmc.Result) string {
		if r.Err != nil {
			return "error: " + shortError(r.Err)
		}
		return "ok"
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	suite := func(r bmc.Result) string {
		if r.CipherSuite == 0 {
			return "-"
		}
		return fmt.Sprint(r.CipherSuite)
	}
	switch op {
	case bmc.OpStatus:
		fmt.Fprintln(tw, "SERVER\tBMC\tPOWER\tSUITE\tRESULT")
		for _, r := range res {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Server, dash(r.BMC), dash(string(r.Power)), suite(r), result(r))
		}
	case bmc.OpPXE, bmc.OpDisk:
		fmt.Fprintln(tw, "SERVER\tBMC\tBOOT DEVICE\tMODE\tAPPLIES TO\tRESULT")
		for _, r := range res {
			dev, mode, once := "-", "-", "-"
			if r.Boot != nil {
				dev = string(r.Boot.Device)
			}
			if q := r.BootRequested; q != nil {
				mode = map[bool]string{true: "uefi", false: "legacy"}[q.UEFI]
				once = map[bool]string{true: "every boot", false: "next boot"}[q.Persistent]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Server, dash(r.BMC), dev, mode, once, result(r))
		}
	case bmc.OpInventory:
		fmt.Fprintln(tw, "SERVER\tMANUFACTURER\tMODEL\tSERIAL\tFIRMWARE\tSENSORS\tRESULT")
		for _, r := range res {
			var mfr, model, serial, fw, sensors string
			if inv := r.Inventory; inv != nil {
				mfr, model, serial, fw = inv.Facts.Manufacturer, inv.Facts.Model, inv.Facts.Serial, inv.Device.Firmware
				sensors = sensorSummary(inv.Sensors)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Server, dash(mfr), dash(model), dash(serial), dash(fw), dash(sensors), result(r))
		}
	default:
		fmt.Fprintln(tw, "SERVER\tBMC\tBEFORE\tSENT\tPOWER\tRESULT")
		for _, r := range res {
			before, sent := "-", "-"
			if r.Change != nil {
				before = string(r.Change.Before)
				sent = string(r.Change.Sent)
				if sent == "" {
					sent = "none (already " + before + ")"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Server, dash(r.BMC), before, sent, dash(string(r.Power)), result(r))
		}
	}
}

// sensorSummary is "7 ok" or "6 ok, 1 failed (PSU2 Status)".
func sensorSummary(ss []bmc.Sensor) string {
	if len(ss) == 0 {
		return "none"
	}
	ok := 0
	var bad []string
	for _, s := range ss {
		switch s.Status {
		case "ok":
			ok++
		default:
			bad = append(bad, s.Name+": "+s.Status)
		}
	}
	out := fmt.Sprintf("%d ok", ok)
	if len(bad) > 0 {
		out += fmt.Sprintf(", %d not ok (%s)", len(bad), strings.Join(bad, ", "))
	}
	return out
}

// shortError drops the "operation on server (BMC addr):" prefix the table
// already shows.
func shortError(err error) string {
	s := err.Error()
	if i := strings.Index(s, "): "); i >= 0 && i < 120 {
		s = s[i+3:]
	}
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		s = s[:j] + " ..."
	}
	return s
}
