package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// UnitState is a control-plane unit as systemd reports it.
type UnitState struct {
	Active  bool
	Enabled bool
}

// Facts is what preflight learns about a control-plane server.
type Facts struct {
	Units map[string]UnitState // by component
	// PortsBusy lists programs other than ours listening on 6443, 10257
	// or 10259.
	PortsBusy []string
	FreeDisk  int64 // bytes free under /usr/local/bin
	Skew      time.Duration
	// HasBinaries is true when kube-apiserver is installed (the binaries'
	// space is taken already).
	HasBinaries bool
}

// ourListeners are the process names (as ss shows them, cut to 15
// characters) that may hold the control-plane ports.
var ourListeners = []string{"kube-apiserver", "kube-controller", "kube-scheduler"}

// factsCmd prints the server's clock, unit states, port holders, free
// disk and whether kube-apiserver is installed.
func (r *run) factsCmd() string {
	var b strings.Builder
	b.WriteString("echo now=$(date +%s.%N)\n")
	for _, c := range Components() {
		u := shell.Quote(UnitName(c))
		fmt.Fprintf(&b, "echo unit %s $(systemctl is-active %s 2>/dev/null || true) $(systemctl is-enabled %s 2>/dev/null || true)\n", c, u, u)
	}
	fmt.Fprintf(&b, "echo listeners=$(ss -Hltnp '( sport = :%d or sport = :%d or sport = :%d )' 2>/dev/null | grep -o 'users:((\"[^\"]*\"' | sed 's/users:((\"//; s/\"//' | sort -u | tr '\\n' ,)\n",
		APIServerPort, ControllerManagerPort, SchedulerPort)
	d := r.path(BinDir)
	// The nearest existing directory: a fresh server may have no BinDir.
	fmt.Fprintf(&b, "d=%s; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done\n", shell.Quote(d))
	b.WriteString("echo avail=$(df --output=avail -B1 \"$d\" 2>/dev/null | tail -1)\n")
	fmt.Fprintf(&b, "[ -f %s ] && echo binaries=1 || echo binaries=0\n", shell.Quote(r.path(BinDir+"/"+APIServer)))
	return b.String()
}

// parseFacts reads the facts part of factsCmd's output; before and after
// bracket the query on this machine's clock.
func parseFacts(out string, before, after time.Time) *Facts {
	f := &Facts{Units: map[string]UnitState{}}
	kv := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if x := strings.Fields(l); len(x) >= 2 && x[0] == "unit" {
			st := UnitState{}
			if len(x) > 2 {
				st.Active = x[2] == "active"
			}
			if len(x) > 3 {
				st.Enabled = x[3] == "enabled"
			}
			f.Units[x[1]] = st
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	for _, p := range strings.Split(kv["listeners"], ",") {
		if p != "" && !slices.Contains(ourListeners, p) {
			f.PortsBusy = append(f.PortsBusy, p)
		}
	}
	f.FreeDisk, _ = strconv.ParseInt(kv["avail"], 10, 64)
	f.Skew = phase.ClockSkew(before, after, kv["now"])
	f.HasBinaries = kv["binaries"] == "1"
	return f
}

// preflight checks a server can run the control plane and records its
// facts. The host's name is added by the phase engine.
func (r *run) preflight(ctx context.Context, h *phase.Host) error {
	before := time.Now()
	out, err := h.Query(ctx, r.factsCmd())
	after := time.Now()
	if err != nil {
		return fmt.Errorf("reading the server's state: %w", err)
	}
	f := parseFacts(out, before, after)
	s := r.state(h.Name)
	r.mu.Lock()
	s.facts = f
	r.mu.Unlock()
	if err := r.checkFacts(f, f.HasBinaries); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	enc, err := r.readEncryption(ctx, h)
	if err != nil {
		return err
	}
	r.mu.Lock()
	s.encryption = enc
	r.mu.Unlock()
	return nil
}

// encryptionMarker starts the output of the encryption configuration
// query when the file exists.
const encryptionMarker = "tricenter: encryption configuration present"

// readEncryption reads the server's encryption configuration, so the
// certificates phase compares its keys with the state's before anything
// is written: nil when the server has none. The content holds keys: it is
// parsed here and never logged, nor quoted in errors.
func (r *run) readEncryption(ctx context.Context, h *phase.Host) (*encryption.HostConfig, error) {
	p := shell.Quote(r.path(EncryptionConfig))
	out, err := h.Query(ctx, "if [ -f "+p+" ]; then echo '"+encryptionMarker+"'; cat -- "+p+"; fi")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", EncryptionConfig, err)
	}
	body, ok := strings.CutPrefix(out, encryptionMarker+"\n")
	if !ok {
		return nil, nil
	}
	c, err := encryption.Parse([]byte(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: tricenter cannot tell which keys encrypted the Secrets; put back the file "+
			"tricenter wrote (a backup, or another control-plane server's copy) before applying", EncryptionConfig, err)
	}
	return c, nil
}

// checkFacts says every reason a server cannot run the control plane.
func (r *run) checkFacts(f *Facts, hasBinary bool) error {
	var errs []error
	if len(f.PortsBusy) > 0 {
		errs = append(errs, fmt.Errorf("ports %d/%d/%d are in use by %s: stop it or choose another server",
			APIServerPort, ControllerManagerPort, SchedulerPort, strings.Join(f.PortsBusy, ", ")))
	}
	if f.Skew > r.o.MaxClockSkew {
		errs = append(errs, fmt.Errorf("clock is %v off this machine's (at most %v): fix NTP on the server",
			f.Skew.Round(time.Millisecond), r.o.MaxClockSkew))
	}
	if !hasBinary && f.FreeDisk > 0 && f.FreeDisk < r.o.MinFreeDisk {
		errs = append(errs, fmt.Errorf("only %d MiB free under %s, at least %d MiB needed for the Kubernetes binaries",
			f.FreeDisk>>20, BinDir, r.o.MinFreeDisk>>20))
	}
	return errors.Join(errs...)
}
