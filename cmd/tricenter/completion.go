package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// inventoryNames lists the values a selection flag takes, each with a
// description shells show beside it.
type inventoryNames func(*inventory.Cluster) []cobra.Completion

// completedFlags are the selection flags whose values come from the
// inventory, wherever a command defines them.
var completedFlags = map[string]inventoryNames{
	"center":  centerNames,
	"rack":    rackNames,
	"server":  serverNames,
	"servers": serverNames,
}

// registerInventoryCompletions makes shell completion offer the centers,
// racks and servers of the command's inventory (-f, else
// TRICENTER_INVENTORY) for --center, --rack, --server and --servers, on
// every command that has them. A flag that already completes otherwise
// (kubeconfig --server is a URL) keeps its own.
func registerInventoryCompletions(cmd *cobra.Command, g *globals) {
	for name, names := range completedFlags {
		if cmd.Flags().Lookup(name) == nil {
			continue
		}
		if _, ok := cmd.GetFlagCompletionFunc(name); ok {
			continue
		}
		_ = cmd.RegisterFlagCompletionFunc(name, g.completeFromInventory(names))
	}
	for _, sub := range cmd.Commands() {
		registerInventoryCompletions(sub, g)
	}
}

// completeFromInventory completes a flag from the inventory. Errors (no
// inventory, an unreadable one, -f - whose stdin is not the inventory
// while completing) complete nothing, and never files. A comma list (the
// flags take several) completes its last item.
func (g *globals) completeFromInventory(names inventoryNames) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		path := g.getenv(envInventory)
		if fl := cmd.Flags().Lookup("file"); fl != nil && fl.Annotations[inventoryFlag] != nil && fl.Changed {
			path = fl.Value.String()
		}
		if path == "" || path == "-" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, _, err := inventory.Load(path)
		if err != nil {
			cobra.CompDebugln("tricenter: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		prefix, last := "", toComplete
		if i := strings.LastIndex(toComplete, ","); i >= 0 {
			prefix, last = toComplete[:i+1], toComplete[i+1:]
		}
		chosen := strings.Split(prefix, ",")
		var out []cobra.Completion
		for _, n := range names(c) {
			name, _, _ := strings.Cut(n, "\t")
			if strings.HasPrefix(name, last) && !slices.Contains(chosen, name) {
				out = append(out, prefix+n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func centerNames(c *inventory.Cluster) []cobra.Completion {
	var out []cobra.Completion
	for _, ct := range c.Spec.Centers {
		out = append(out, cobra.CompletionWithDesc(ct.Name, describe(ct.Site, string(ct.Role))))
	}
	return out
}

func rackNames(c *inventory.Cluster) []cobra.Completion {
	var out []cobra.Completion
	for _, r := range c.Spec.Racks {
		out = append(out, cobra.CompletionWithDesc(r.Name, "center "+r.Center))
	}
	return out
}

func serverNames(c *inventory.Cluster) []cobra.Completion {
	var out []cobra.Completion
	for _, h := range c.Hosts() {
		var parts []string
		if h.Rack != nil {
			parts = append(parts, "rack "+h.Rack.Name)
		}
		for _, r := range h.Roles {
			parts = append(parts, string(r))
		}
		out = append(out, cobra.CompletionWithDesc(h.Name, describe(parts...)))
	}
	return out
}

// describe joins the non-empty parts of a completion's description.
func describe(parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), ", ")
}
