package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// writeGoingDark lists the servers a command is about to take down,
// grouped by center and rack; note adds what a server runs ("etcd
// member", ...).
func writeGoingDark(w io.Writer, hosts []inventory.Host, note func(inventory.Host) string) {
	type group struct {
		center, rack string
		names        []string
	}
	var groups []*group
	for _, h := range hosts {
		center, rack := "-", "-"
		if h.Center != nil {
			center = h.Center.Name
		}
		if h.Rack != nil {
			rack = h.Rack.Name
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.center == center && g.rack == rack })
		if i < 0 {
			groups = append(groups, &group{center: center, rack: rack})
			i = len(groups) - 1
		}
		n := h.Name
		if x := note(h); x != "" {
			n += " (" + x + ")"
		}
		groups[i].names = append(groups[i].names, n)
	}
	slices.SortStableFunc(groups, func(a, b *group) int {
		return cmp.Or(cmp.Compare(a.center, b.center), cmp.Compare(a.rack, b.rack))
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range groups {
		fmt.Fprintf(tw, "  center %s\track %s\t%s\n", g.center, g.rack, strings.Join(g.names, ", "))
	}
	tw.Flush()
}

// countServers is "1 server" or "3 servers".
func countServers(n int) string { return fmt.Sprintf("%d %s", n, plural(n, "server", "servers")) }

// errNoTerminal: with -f - stdin held the inventory, and without a
// terminal nobody can answer a confirmation.
var errNoTerminal = errors.New("stdin held the inventory (-f -) and there is no terminal to confirm on: pass --yes to go ahead without confirmation")

// canConfirm says why nobody could answer on in the question whether to
// go ahead with what (a --yes flag skips it).
func canConfirm(in io.Reader, what string) error {
	if _, ok := in.(noTerminal); ok {
		return errNoTerminal
	}
	if f, ok := in.(*os.File); ok && !isTTY(f) {
		return fmt.Errorf("stdin is not a terminal, so nobody can confirm %s: pass --yes to go ahead without confirmation", what)
	}
	return nil
}

// noTerminal is the input of confirmations when stdin held the inventory
// and no terminal could be opened.
type noTerminal struct{}

func (noTerminal) Read([]byte) (int, error) { return 0, errNoTerminal }
