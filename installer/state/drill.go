package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// The drill journal and its lock live beside the PKI:
//
//	DIR/<cluster>/drill-journal.json   what a running center-loss drill took down
//	DIR/<cluster>/drill.lock           held (flock) by a running drill or drill resume

// DrillJournal is what a center-loss drill records before its first
// power-off and updates as servers come back, so that a drill killed before
// its restore finished (kill -9, a crashed jump host) can be resumed: the
// servers it names that are not in Restored may still be down.
type DrillJournal struct {
	Center string `json:"center"`
	// Method is how the servers were taken down: "bmc" (power off through
	// their BMCs) or "ssh" (etcd stopped over SSH).
	Method string `json:"method"`
	// Servers are the servers the drill takes down.
	Servers []string `json:"servers"`
	// Restored are the servers confirmed back on (powered on, or etcd
	// started).
	Restored []string `json:"restored"`
	// Keys is the etcd prefix of the drill's writes (deleted at its end).
	Keys string `json:"keys,omitempty"`
	// PID and Host name the drill's process; Started is when it started.
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// Pending are the servers not confirmed back on, in the journal's order.
func (j *DrillJournal) Pending() []string {
	var out []string
	for _, s := range j.Servers {
		if !slices.Contains(j.Restored, s) {
			out = append(out, s)
		}
	}
	return out
}

// Describe names the drill that wrote the journal, for messages.
func (j *DrillJournal) Describe() string {
	return fmt.Sprintf("center %s (%s), started %s by pid %d on %s", j.Center, j.Method,
		j.Started.Local().Format(time.RFC3339), j.PID, j.Host)
}

// DrillJournalPath is where the drill journal is kept.
func (d *Dir) DrillJournalPath() string { return filepath.Join(d.Path, "drill-journal.json") }

// DrillJournal reads the drill journal; nil (and no error) when there is
// none.
func (d *Dir) DrillJournal() (*DrillJournal, error) {
	b, err := os.ReadFile(d.DrillJournalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j DrillJournal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w: check that the servers it names are back on, then remove it", d.DrillJournalPath(), err)
	}
	return &j, nil
}

// WriteDrillJournal records j atomically (a reader sees the old journal or
// the new one, whole).
func (d *Dir) WriteDrillJournal(j *DrillJournal) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(d.DrillJournalPath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the drill journal: %w", err)
	}
	return nil
}

// RemoveDrillJournal deletes the drill journal; no journal is no error.
func (d *Dir) RemoveDrillJournal() error {
	err := os.Remove(d.DrillJournalPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the drill journal: %w", err)
	}
	return nil
}

// ErrDrillRunning is returned by LockDrill while another drill or drill
// resume holds the lock.
var ErrDrillRunning = errors.New("another drill of this cluster is running")

// LockDrill takes the cluster's drill lock (an flock on DIR/<cluster>/drill.lock)
// without waiting: one drill or drill resume at a time per state
// directory. The kernel releases it when the holder dies, so a killed
// drill never blocks its resume. unlock releases it.
func (d *Dir) LockDrill() (unlock func(), err error) {
	p := filepath.Join(d.Path, "drill.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the drill lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			what := "its lock " + p + " is held"
			if j, jerr := d.DrillJournal(); jerr == nil && j != nil {
				what = j.Describe()
			}
			return nil, fmt.Errorf("%w (%s): wait for it to end", ErrDrillRunning, what)
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}
