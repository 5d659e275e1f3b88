package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Report is `lab status`: the lab process and every server's power as its
// BMC reports it.
type Report struct {
	Record  *Record
	Running bool
	// Power is each server's power state from its BMC ("on", "off"), or
	// the error that kept the BMC from answering.
	Power map[string]string
}

// Status reads the lab's record and asks every BMC for its power state.
func Status(ctx context.Context, dir string) (*Report, error) {
	rec, err := ReadRecord(dir)
	if err != nil {
		return nil, err
	}
	rep := &Report{Record: rec, Running: rec.Process().Alive(), Power: map[string]string{}}
	if !rep.Running || !rec.Ready {
		return rep, nil
	}
	targets, err := BMCTargets(rec)
	if err != nil {
		return nil, err
	}
	pool := bmc.NewPool(bmc.Options{RetryBudget: 5 * time.Second})
	defer pool.Close(context.Background())
	for _, r := range pool.Run(ctx, targets, bmc.Request{Op: bmc.OpStatus}) {
		if r.Err != nil {
			rep.Power[r.Server] = "unknown (" + r.Err.Error() + ")"
			continue
		}
		rep.Power[r.Server] = string(r.Power)
	}
	return rep, nil
}

// BMCTargets are the lab's BMCs, one per server in record order, with the
// lab's admin credentials.
func BMCTargets(rec *Record) ([]bmc.Target, error) {
	pw, err := os.ReadFile(Paths{Dir: rec.Dir}.BMCPassword())
	if err != nil {
		return nil, err
	}
	targets := make([]bmc.Target, 0, len(rec.Servers))
	for _, s := range rec.Servers {
		targets = append(targets, bmc.Target{Server: s.Name, Address: s.BMC, Port: inventory.DefaultBMCPort, User: BMCUser,
			Password: strings.TrimSpace(string(pw)), CipherSuites: []int{3}})
	}
	return targets, nil
}

// Print writes the report as tables.
func (rep *Report) Print(w io.Writer) {
	rec := rep.Record
	state := "up"
	switch {
	case !rep.Running:
		state = fmt.Sprintf("not running (process %d is gone: `tricenter-lab down --dir %s` removes what it left)", rec.PID, rec.Dir)
	case !rec.Ready:
		state = "coming up"
	}
	fmt.Fprintf(w, "Lab %s: %s\n", rec.Name, state)
	fmt.Fprintf(w, "  directory   %s\n  inventory   %s\n  tfvars      %s\n", rec.Dir, rec.Inventory, rec.TFVars)
	if rec.UpTook != "" {
		fmt.Fprintf(w, "  up since    %s (took %s)\n", rec.Started.Format(time.RFC3339), rec.UpTook)
	}
	if rec.APIVIP != "" {
		fmt.Fprintf(w, "  API VIP     %s (routed from this machine through the lab router)\n", rec.APIVIP)
	}
	if rec.RouterVty != "" {
		fmt.Fprintf(w, "  TORs        vtysh --vty_socket %s -c 'show ip route bgp'\n", rec.RouterVty)
	}
	for _, c := range rec.CoreRouters {
		fmt.Fprintf(w, "  %-11s vtysh --vty_socket %s -c 'show ip route bgp'  (core router of %s, AS %d)\n", c.Name, c.Vty, c.Site, c.ASN)
	}
	if rec.PXELog != "" {
		fmt.Fprintf(w, "  PXE log     %s (DHCP and TFTP for the VMs)\n", rec.PXELog)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tCENTER\tRACK\tMACHINE\tADDRESS\tBMC\tPOWER\tROLES")
	for _, s := range rec.Servers {
		p := rep.Power[s.Name]
		if p == "" {
			p = "-"
		}
		m := s.Machine
		if s.Boot == BootPXE {
			m += " (pxe)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Center, s.Rack, m, s.Address, s.BMC, p, strings.Join(s.Roles, ","))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JUMP HOST\tCENTER\tADDRESS")
	for _, j := range rec.JumpHosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", j.Name, j.Center, j.Address)
	}
	tw.Flush()
}
