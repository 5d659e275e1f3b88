package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newStatusCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status -f FILE",
		Short: "Show the cluster as observed: etcd per center, the API, nodes per center and rack, BGP, certificate expiry",
		Long: `status asks the cluster, not the inventory: every etcd member (health, leader
and its center, members per center; a leader outside the production center
while production has a healthy member is pointed out: the next apply moves it
home), /readyz through every control-plane server and through
the API VIP, every server's Node (registered, Ready, version, pod CIDR) by
center and rack, and every BGP agent's sessions. It exits 1 when anything is
not as planned, listing why.

It also reports the certificates: per kind, the one in the state that
expires first, the time left, RENEW DUE within spec.pki.renewBefore (720h by
default: the next apply reissues it; a warning, exit 0) and EXPIRED (a
problem, exit 1); and the certificate every API endpoint serves now (a TLS
handshake), compared with the state's.

Every line is what was observed now. A node is Ready only when its Ready
condition is True, its kubelet's heartbeat (the node Lease) is at most two
renew intervals old (20 s by default; a dead server's Node keeps its last
Ready condition for the 40 s grace period) and, where the server answers over
SSH, its boot id is the one its kubelet reported (a server rebooted since is
not Ready yet); where it does not answer, the boot id is "not verified".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			st, err := e.Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				if err := cliflags.WriteJSON(g.stdout, st); err != nil {
					return err
				}
			} else {
				printStatus(g.stdout, st)
			}
			if !st.OK() {
				return &exitError{code: 1, err: fmt.Errorf("%d problems", len(st.Problems))}
			}
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func printStatus(w io.Writer, st *installer.Status) {
	fmt.Fprintf(w, "cluster %s\n", st.Cluster)
	if len(st.Lost) > 0 {
		fmt.Fprintf(w, "lost centers %s: servers %s not checked (the inventory marks them lost)\n",
			strings.Join(st.Lost, ", "), strings.Join(st.LostServers, ", "))
	}
	if h := st.Etcd; h != nil {
		leader := leaderName(h)
		if l := st.EtcdLeader; l != nil && l.Leader != "" {
			leader = l.At()
		}
		fmt.Fprintf(w, "etcd: leader %s, members per center %v\n", leader, h.PerCenter)
		if l := st.EtcdLeader; l != nil && l.Note() != "" {
			fmt.Fprintf(w, "  %s\n", l.Note())
		}
	}
	fmt.Fprintln(w, "API:")
	for _, a := range st.API {
		state := "ready"
		if !a.Ready {
			state = "NOT READY"
		}
		fmt.Fprintf(w, "  %-16s %-34s %s\n", a.Name, a.URL, state)
	}
	fmt.Fprintln(w, "nodes (Ready: condition True, kubelet heartbeat fresh, server's boot id the one its kubelet reported):")
	fmt.Fprintf(w, "  %-8s %-12s %-16s %-9s %-9s %-14s %-10s %s\n", "CENTER", "RACK", "NAME", "STATUS", "HEARTBEAT", "BOOT ID", "VERSION", "POD CIDR")
	for _, n := range st.Nodes {
		s, hb := "Ready", "-"
		switch {
		case !n.Registered && n.Reason != "" && strings.HasPrefix(n.Reason, "not verified"):
			s = "unknown"
		case !n.Registered:
			s = "absent"
		case !n.Ready:
			s = "NotReady"
		}
		if n.Registered && n.Heartbeat > 0 {
			hb = n.Heartbeat.Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "  %-8s %-12s %-16s %-9s %-9s %-14s %-10s %s\n", n.Center, n.Rack, n.Name, s, hb, bootWord(n.Boot), n.Version, n.PodCIDR)
	}
	if len(st.BGP)+len(st.BGPNotVerified) > 0 {
		fmt.Fprintln(w, "BGP:")
		for _, n := range slices.Sorted(maps.Keys(st.BGP)) {
			b := st.BGP[n]
			up := 0
			for _, s := range b.Sessions {
				if s.Established() {
					up++
				}
			}
			var pfx []string
			for _, a := range b.Announced {
				pfx = append(pfx, a.Prefix)
			}
			fmt.Fprintf(w, "  %-16s %d/%d sessions Established, announcing %s\n", n, up, len(b.Sessions), strings.Join(pfx, " "))
		}
		for _, n := range slices.Sorted(maps.Keys(st.BGPNotVerified)) {
			fmt.Fprintf(w, "  %-16s not verified (the agent could not be asked)\n", n)
		}
	}
	if l := st.LoadBalancers; l != nil {
		printLoadBalancers(w, l)
	}
	if len(st.Snapshots) > 0 {
		printSnapshots(w, st.Snapshots)
	}
	if cs := st.Certificates; cs != nil {
		printCertificates(w, cs)
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(w, "warnings:")
		for _, x := range st.Warnings {
			fmt.Fprintln(w, "  -", x)
		}
	}
	if len(st.Problems) > 0 {
		fmt.Fprintln(w, "problems:")
		for _, p := range st.Problems {
			fmt.Fprintln(w, "  -", p)
		}
	}
}

// printSnapshots is the etcd snapshot section: per center, the newest
// snapshot whose sealed file matches its record, and its age (the
// recovery point that center holds now).
func printSnapshots(w io.Writer, cs []installer.SnapshotCenterStatus) {
	fmt.Fprintln(w, "etcd snapshots (newest per center, sealed file checked now):")
	fmt.Fprintf(w, "  %-8s %-16s %-9s %-10s %-22s %-6s %s\n", "CENTER", "STORE", "AGE", "REVISION", "TAKEN FROM", "COUNT", "RESTORE")
	for _, c := range cs {
		switch {
		case c.Error != "":
			fmt.Fprintf(w, "  %-8s %-16s not verified (%s)\n", c.Center, c.Server, c.Error)
		case c.Newest == nil:
			fmt.Fprintf(w, "  %-8s %-16s none\n", c.Center, c.Server)
		default:
			n := c.Newest
			fmt.Fprintf(w, "  %-8s %-16s %-9s %-10d %-22s %-6d %s\n", c.Center, c.Server, c.Age.Round(time.Second), n.Revision,
				n.Member+" ("+n.MemberCenter+")", c.Count, c.Restored)
		}
	}
}

// printLoadBalancers is the LoadBalancer section: the controller, then
// per Service its address, policy and preference, ready endpoints and
// announcing nodes per center.
func printLoadBalancers(w io.Writer, l *installer.LoadBalancerStatus) {
	leader := l.Controller.Leader
	if leader == "" {
		leader = "none"
		if l.Controller.LeaderNote != "" {
			leader += " (" + l.Controller.LeaderNote + ")"
		}
	}
	fmt.Fprintf(w, "LoadBalancer Services (controller %d/%d Ready now, leader %s):\n", l.Controller.Available, l.Controller.Replicas, leader)
	if len(l.Services) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	fmt.Fprintf(w, "  %-28s %-16s %-8s %-10s %-22s %s\n", "SERVICE", "ADDRESS", "POLICY", "PREFER", "READY ENDPOINTS", "ANNOUNCED BY")
	for _, s := range l.Services {
		addr := strings.Join(s.Addresses, ",")
		if addr == "" {
			addr = "<pending>"
		}
		var ready, by []string
		for _, c := range slices.Sorted(maps.Keys(s.Ready)) {
			ready = append(ready, fmt.Sprintf("%s:%d", c, s.Ready[c]))
		}
		for _, c := range slices.Sorted(maps.Keys(s.Announcing)) {
			by = append(by, c+":"+strings.Join(s.Announcing[c], ","))
		}
		fmt.Fprintf(w, "  %-28s %-16s %-8s %-10s %-22s %s\n", s.Service, addr, s.Policy, s.Prefer, orDash(strings.Join(ready, " ")), orDash(strings.Join(by, " ")))
		if s.Pending != "" {
			fmt.Fprintf(w, "  %-28s pending: %s\n", "", s.Pending)
		}
	}
}

// bootWord is the boot id check in one column; the whole reason is in the
// problems.
func bootWord(b string) string {
	switch {
	case b == "":
		return "-"
	case strings.HasPrefix(b, "not verified"):
		return "not verified"
	case strings.HasPrefix(b, "differs"):
		return "DIFFERS"
	}
	return b
}

// printCertificates is the certificates section: per kind from the state,
// then the API server's certificate as served now.
func printCertificates(w io.Writer, cs *installer.CertificateStatus) {
	fmt.Fprintf(w, "certificates (source: %s; renew before %s):\n", cs.Source, installer.ShortDuration(cs.RenewBefore))
	fmt.Fprintf(w, "  %-30s %-5s %-20s %-12s %-9s %s\n", "KIND", "COUNT", "EARLIEST EXPIRY", "LEFT", "FLAG", "FILE")
	for _, k := range cs.Kinds {
		if k.NoExpiry {
			fmt.Fprintf(w, "  %-30s %-5d %-20s %-12s %-9s %s\n", k.Kind, k.Count, "no expiry", "-", "", k.File)
			continue
		}
		flag := ""
		switch {
		case k.Expired:
			flag = "EXPIRED"
		case k.RenewDue:
			flag = "RENEW DUE"
		}
		fmt.Fprintf(w, "  %-30s %-5d %-20s %-12s %-9s %s\n", k.Kind, k.Count, k.NotAfter.UTC().Format(time.RFC3339), leftWord(k.Left), flag, k.File)
	}
	if len(cs.Unused) > 0 {
		fmt.Fprintf(w, "  not used by the inventory any more (not judged): %s\n", strings.Join(cs.Unused, " "))
	}
	if len(cs.Served) == 0 {
		return
	}
	fmt.Fprintln(w, "  kube-apiserver certificate served now (TLS handshake):")
	for _, s := range cs.Served {
		switch {
		case !s.Observed:
			fmt.Fprintf(w, "    %-16s %-22s not observed (%s)\n", s.Name, s.Address, s.Error)
		default:
			same := "the state's"
			if !s.MatchesStore {
				same = "DIFFERS from the state's"
			}
			left := leftWord(s.Left) + " left"
			if s.Left <= 0 {
				left = "EXPIRED"
			}
			fmt.Fprintf(w, "    %-16s %-22s expires %s (%s), %s\n", s.Name, s.Address, s.NotAfter.UTC().Format(time.RFC3339), left, same)
		}
	}
}

// leftWord is a time left in days above two days, else as a duration.
func leftWord(d time.Duration) string {
	switch {
	case d <= 0:
		return "expired"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return installer.ShortDuration(d.Round(time.Second))
}
