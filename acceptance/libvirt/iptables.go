package libvirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// libvirtd's network driver makes iptables chains named LIBVIRT_* (and
// rules in the built-in chains that jump to them) and leaves them when it
// stops. The lab removes only the chains that appeared while the libvirtd
// it started ran: before it starts one, StartDaemon records the LIBVIRT_*
// chains that already exist (a libvirtd of the machine's own may have made
// them) in a file of its run directory, where Daemon.Stop and, after a
// crash, SweepIptablesChains read them. A Daemon that found a libvirtd
// running records nothing and removes nothing.

// iptablesBins are the programs whose tables libvirtd writes to.
var iptablesBins = []string{"iptables", "ip6tables"}

// iptablesTables are the tables libvirtd's chains live in.
var iptablesTables = []string{"filter", "nat", "mangle", "raw"}

// chainPrefix starts the name of every chain libvirtd makes.
const chainPrefix = "LIBVIRT_"

// IptablesChain is one of libvirt's chains (LIBVIRT_*) in one table of
// iptables or ip6tables.
type IptablesChain struct {
	Bin   string `json:"bin"`   // iptables or ip6tables
	Table string `json:"table"` // filter, nat, mangle or raw
	Name  string `json:"name"`
}

func (c IptablesChain) String() string { return c.Bin + " -t " + c.Table + " " + c.Name }

// IptablesSnapshot is the LIBVIRT_* chains that existed before a Daemon
// started its libvirtd: they are not its own, and no teardown removes
// them.
type IptablesSnapshot struct {
	Chains []IptablesChain `json:"chains"`
}

// iptablesSnapshotFile is the snapshot's file in a Daemon's run directory.
const iptablesSnapshotFile = "iptables-before.json"

// IptablesSnapshotPath is where StartDaemon records the snapshot of the
// Daemon whose run directory is runDir.
func IptablesSnapshotPath(runDir string) string { return filepath.Join(runDir, iptablesSnapshotFile) }

// IptablesChains lists the LIBVIRT_* chains of the filter, nat, mangle and
// raw tables of iptables and ip6tables. Without iptables on this machine
// there are none; a table this kernel does not have holds none.
func IptablesChains() ([]IptablesChain, error) {
	var out []IptablesChain
	for _, bin := range iptablesBins {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, table := range iptablesTables {
			rules, err := exec.Command(bin, "-w", "-t", table, "-S").Output()
			if err != nil {
				continue // a table this kernel does not have
			}
			_, chains := libvirtRules(string(rules), nil)
			for _, c := range chains {
				out = append(out, IptablesChain{Bin: bin, Table: table, Name: c})
			}
		}
	}
	return out, nil
}

// NewIptablesChains returns the chains of now that are not in before, in
// the order of now: a chain is the same only in the same table of the same
// program.
func NewIptablesChains(before, now []IptablesChain) []IptablesChain {
	had := make(map[IptablesChain]bool, len(before))
	for _, c := range before {
		had[c] = true
	}
	var out []IptablesChain
	for _, c := range now {
		if !had[c] {
			out = append(out, c)
		}
	}
	return out
}

// RecordIptablesChains records the LIBVIRT_* chains that exist now in
// runDir (IptablesSnapshotPath) and returns them: StartDaemon calls it
// right before it starts a libvirtd.
func RecordIptablesChains(runDir string) (*IptablesSnapshot, error) {
	chains, err := IptablesChains()
	if err != nil {
		return nil, err
	}
	snap := &IptablesSnapshot{Chains: chains}
	if snap.Chains == nil {
		snap.Chains = []IptablesChain{}
	}
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(IptablesSnapshotPath(runDir), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("recording the LIBVIRT_* iptables chains that exist before libvirtd starts: %w", err)
	}
	return snap, nil
}

// ReadIptablesSnapshot reads the snapshot recorded in runDir. It returns
// nil and no error when there is none: the Daemon found a libvirtd
// running and started none, or its Stop already removed its chains.
func ReadIptablesSnapshot(runDir string) (*IptablesSnapshot, error) {
	b, err := os.ReadFile(IptablesSnapshotPath(runDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var snap IptablesSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("%s: %w (delete the file to have no LIBVIRT_* chain removed)", IptablesSnapshotPath(runDir), err)
	}
	return &snap, nil
}

// SweepIptablesChains removes the LIBVIRT_* chains that the libvirtd
// started with run directory runDir left behind when its process died
// before Daemon.Stop: those not in the snapshot recorded there. Without a
// snapshot it removes nothing. Once they are gone the snapshot goes too,
// so a later sweep cannot take the chains of a libvirtd started since.
// It returns the chains it removed.
func SweepIptablesChains(runDir string) ([]IptablesChain, error) {
	snap, err := ReadIptablesSnapshot(runDir)
	if err != nil || snap == nil {
		return nil, err
	}
	removed, err := RemoveIptablesChains(snap.Chains)
	if err != nil {
		return removed, err
	}
	if err := os.Remove(IptablesSnapshotPath(runDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return removed, err
	}
	return removed, nil
}

// RemoveIptablesChains removes every LIBVIRT_* chain that is not in keep,
// and the rules of other chains that jump to one, from the filter, nat,
// mangle and raw tables of iptables and ip6tables: what a libvirtd's
// network driver leaves behind. Chains in keep stay with their rules. Call
// it only when no libvirtd that relies on the chains runs. It returns the
// chains it removed.
func RemoveIptablesChains(keep []IptablesChain) ([]IptablesChain, error) {
	kept := make(map[IptablesChain]bool, len(keep))
	for _, c := range keep {
		kept[c] = true
	}
	var removed []IptablesChain
	var errs []error
	for _, bin := range iptablesBins {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, table := range iptablesTables {
			r, err := removeChains(bin, table, func(name string) bool {
				return !kept[IptablesChain{Bin: bin, Table: table, Name: name}]
			})
			removed = append(removed, r...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// removeChains removes the LIBVIRT_* chains of one table that remove
// selects, after the rules elsewhere that jump to them.
func removeChains(bin, table string, remove func(chain string) bool) ([]IptablesChain, error) {
	out, err := exec.Command(bin, "-w", "-t", table, "-S").Output()
	if err != nil {
		// A table this kernel does not have.
		return nil, nil
	}
	rules, chains := libvirtRules(string(out), remove)
	if len(chains) == 0 {
		return nil, nil
	}
	var errs []error
	run := func(args ...string) error {
		full := append([]string{"-w", "-t", table}, args...)
		out, err := exec.Command(bin, full...).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%s %s: %w: %s", bin, strings.Join(full, " "), err, strings.TrimSpace(string(out)))
			errs = append(errs, err)
		}
		return err
	}
	for _, r := range rules {
		_ = run(append([]string{"-D"}, r...)...)
	}
	for _, c := range chains {
		_ = run("-F", c)
	}
	var removed []IptablesChain
	for _, c := range chains {
		if run("-X", c) == nil {
			removed = append(removed, IptablesChain{Bin: bin, Table: table, Name: c})
		}
	}
	return removed, errors.Join(errs...)
}

// libvirtRules parses `iptables -S` output: the LIBVIRT_* chains that
// remove selects (all of them when remove is nil) and, as -D arguments,
// the rules of the other chains that jump to one of those.
func libvirtRules(s string, remove func(chain string) bool) (rules [][]string, chains []string) {
	gone := map[string]bool{}
	lines := strings.Split(s, "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "-N" && strings.HasPrefix(f[1], chainPrefix) && (remove == nil || remove(f[1])) {
			chains = append(chains, f[1])
			gone[f[1]] = true
		}
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "-A" || gone[f[1]] {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if (f[i] == "-j" || f[i] == "-g") && gone[f[i+1]] {
				rules = append(rules, f[1:])
				break
			}
		}
	}
	return rules, chains
}
