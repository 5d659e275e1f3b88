package installer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// HostCheck is what SSHCheck found on one server.
type HostCheck struct {
	Host    string `json:"host"`
	Center  string `json:"center"`
	Address string `json:"address"`
	// Via names the hops in front of the server ("bastion>dc1-jump"), "-"
	// for none.
	Via       string `json:"via"`
	User      string `json:"user"`
	Reachable bool   `json:"reachable"`
	// HostKey is the verified host key's fingerprint.
	HostKey string `json:"hostKey,omitempty"`
	// Sudo is "ok" (sudo -n works), "root" (logged in as root),
	// "password" (sudo asks for one), "failed" or "unknown".
	Sudo      string  `json:"sudo"`
	OS        string  `json:"os,omitempty"`
	Kernel    string  `json:"kernel,omitempty"`
	Arch      string  `json:"arch,omitempty"`
	CPUs      int     `json:"cpus,omitempty"`
	MemoryGiB float64 `json:"memoryGiB,omitempty"`
	Hostname  string  `json:"hostname,omitempty"`
	LatencyMs float64 `json:"latencyMs,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// OK is true when the server is reachable, sudo works (or the login is
// root) and nothing failed.
func (r *HostCheck) OK() bool {
	return r.Reachable && (r.Sudo == "ok" || r.Sudo == "root") && r.Error == ""
}

const factsScript = `. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}"; uname -r; uname -m; nproc; ` +
	`awk '/^MemTotal:/ {print $2}' /proc/meminfo; hostname`

// SSHCheck connects to every server sel matches the way the installer
// does (through its center's jump host and the bastion, every hop's host
// key verified) and reports, per server in inventory order, whether it is
// reachable, its verified host key, whether sudo works without a password,
// and OS facts. It changes nothing; a server that fails is a row, not an
// error.
func (e *Engine) SSHCheck(ctx context.Context, sel inventory.Selector) ([]HostCheck, error) {
	m := e.Manager(false)
	m.Progress = progress.Discard
	defer m.Close()
	hosts, err := e.selectHosts(m, sel)
	if err != nil {
		return nil, err
	}
	rows := make([]HostCheck, len(hosts))
	for i, h := range hosts {
		rows[i] = HostCheck{Host: h.Name, Address: h.Endpoint.Addr(), Via: via(h.Endpoint), User: h.SSH.User, Sudo: "unknown"}
		if h.Center != nil {
			rows[i].Center = h.Center.Name
		}
	}
	_ = eachRow(ctx, m, hosts, rows, func(ctx context.Context, h *phase.Host, r *HostCheck) error {
		checkHost(ctx, h, r)
		return nil
	})
	return rows, ctx.Err()
}

// eachRow runs f on every host with the manager's fan-out, giving it the
// host's row (rows[i] is hosts[i]'s): each server writes only its own.
func eachRow[R any](ctx context.Context, m *phase.Manager, hosts []*phase.Host, rows []R, f func(context.Context, *phase.Host, *R) error) error {
	idx := make(map[*phase.Host]int, len(hosts))
	for i, h := range hosts {
		idx[h] = i
	}
	return m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		return f(ctx, h, &rows[idx[h]])
	})
}

// selectHosts is the hosts sel matches; none is an error.
func (e *Engine) selectHosts(m *phase.Manager, sel inventory.Selector) ([]*phase.Host, error) {
	hosts, err := m.Hosts(sel)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no host matches the selection in %s", e.cfg.Source)
	}
	return hosts, nil
}

func checkHost(ctx context.Context, h *phase.Host, r *HostCheck) {
	start := time.Now()
	c, err := h.Client(ctx)
	if err != nil {
		r.Error = err.Error()
		return
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
		return
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
}

// via names the hops in front of a host, outermost first.
func via(ep ssh.Endpoint) string {
	var hops []string
	for j := ep.Jump; j != nil; j = j.Jump {
		hops = append([]string{j.Name}, hops...)
	}
	if len(hops) == 0 {
		return "-"
	}
	return strings.Join(hops, ">")
}
