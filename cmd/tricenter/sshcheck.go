package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

func newSSHCheckCmd(g *globals) *cobra.Command {
	var f sshFlags
	var output string
	cmd := &cobra.Command{
		Use:   "ssh-check -f FILE [--role R] [--center C]",
		Short: "Check every host is reachable over SSH, its host key verified, sudo working; print OS facts",
		Long: `ssh-check connects to each selected host the way the installer does (through
its center's jump host and the --bastion, host keys checked against the
inventory pins, known_hosts files and @cert-authority lines) and reports per
host: reachable, the verified host key fingerprint, whether sudo works
without a password, and OS facts. It changes nothing on the hosts.

The exit status is 0 when every host passes, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return runSSHCheck(cmd.Context(), g, &f, output)
		},
	}
	addSSHFlags(cmd, &f)
	addOutputFlag(cmd, &output)
	return cmd
}

// hostCheck is one row of ssh-check.
type hostCheck struct {
	Host      string  `json:"host"`
	Center    string  `json:"center"`
	Address   string  `json:"address"`
	Via       string  `json:"via"`
	User      string  `json:"user"`
	Reachable bool    `json:"reachable"`
	HostKey   string  `json:"hostKey,omitempty"`
	Sudo      string  `json:"sudo"` // ok, root, password, failed, unknown
	OS        string  `json:"os,omitempty"`
	Kernel    string  `json:"kernel,omitempty"`
	Arch      string  `json:"arch,omitempty"`
	CPUs      int     `json:"cpus,omitempty"`
	MemoryGiB float64 `json:"memoryGiB,omitempty"`
	Hostname  string  `json:"hostname,omitempty"`
	LatencyMs float64 `json:"latencyMs,omitempty"`
	Error     string  `json:"error,omitempty"`
}

func (r *hostCheck) ok() bool {
	return r.Reachable && (r.Sudo == "ok" || r.Sudo == "root") && r.Error == ""
}

const factsScript = `. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}"; uname -r; uname -m; nproc; ` +
	`awk '/^MemTotal:/ {print $2}' /proc/meminfo; hostname`

func runSSHCheck(ctx context.Context, g *globals, f *sshFlags, output string) error {
	m, hosts, err := f.manager(g, false, progress.Discard)
	if err != nil {
		return err
	}
	defer m.Close()
	rows := make([]*hostCheck, len(hosts))
	var mu sync.Mutex
	idx := map[*phase.Host]int{}
	for i, h := range hosts {
		idx[h] = i
		rows[i] = &hostCheck{Host: h.Name, Address: h.Endpoint.Addr(), Via: via(h.Endpoint), User: h.SSH.User, Sudo: "unknown"}
		if h.Center != nil {
			rows[i].Center = h.Center.Name
		}
	}
	_ = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		r := checkHost(ctx, h)
		mu.Lock()
		r.Host, r.Center, r.Address, r.Via, r.User = rows[idx[h]].Host, rows[idx[h]].Center, rows[idx[h]].Address, rows[idx[h]].Via, rows[idx[h]].User
		rows[idx[h]] = r
		mu.Unlock()
		return nil
	})
	failed := 0
	for _, r := range rows {
		if !r.ok() {
			failed++
		}
	}
	if output == "json" {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		printChecks(g, rows)
		fmt.Fprintf(g.stdout, "\n%d of %d hosts OK\n", len(rows)-failed, len(rows))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

func checkHost(ctx context.Context, h *phase.Host) *hostCheck {
	r := &hostCheck{Sudo: "unknown"}
	start := time.Now()
	c, err := h.Client(ctx)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Reachable = true
	r.HostKey = c.HostKeyFingerprint()
	out, err := h.QueryAsUser(ctx, factsScript)
	r.LatencyMs = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		r.Error = "reading facts: " + err.Error()
	} else {
		l := strings.Split(strings.TrimSpace(out), "\n")
		if len(l) >= 6 {
			r.OS, r.Kernel, r.Arch, r.Hostname = l[0], l[1], l[2], l[5]
			r.CPUs, _ = strconv.Atoi(l[3])
			kb, _ := strconv.ParseFloat(l[4], 64)
			r.MemoryGiB = float64(int(kb/1024/1024*10+0.5)) / 10
		}
	}
	if c.User() == "root" {
		r.Sudo = "root"
		return r
	}
	_, err = h.Query(ctx, "true")
	switch {
	case err == nil:
		r.Sudo = "ok"
	case errors.Is(err, ssh.ErrSudoPassword):
		r.Sudo = "password"
		r.Error = err.Error()
	default:
		r.Sudo = "failed"
		r.Error = "sudo: " + err.Error()
	}
	return r
}

func printChecks(g *globals, rows []*hostCheck) {
	tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCENTER\tADDRESS\tVIA\tREACHABLE\tHOST KEY\tSUDO\tOS\tKERNEL\tCPUS\tMEM")
	for _, r := range rows {
		reach := "no"
		if r.Reachable {
			reach = "yes"
		}
		dash := func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		}
		cpus, mem := "-", "-"
		if r.CPUs > 0 {
			cpus = strconv.Itoa(r.CPUs)
			mem = fmt.Sprintf("%.1fGiB", r.MemoryGiB)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, dash(r.Center), r.Address, r.Via, reach,
			dash(r.HostKey), r.Sudo, dash(r.OS), dash(r.Kernel), cpus, mem)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(g.stdout, "%s: %s\n", r.Host, r.Error)
		}
	}
}
