package bgp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// DefaultHoldDir is where holds are kept (Config.HoldDir). It is under
// /run on purpose: a hold survives a restart of the agent (the agent reads
// the directory when it starts) but not a reboot. A hold covers a window in
// which something on this node is being stopped or replaced (an upgrade
// step); a reboot ends that window, and a hold left behind by an
// interrupted upgrade must not keep a healthy server out of its VIPs
// forever with nobody left to release it. After a reboot the health check
// alone decides again, and it announces nothing before the service
// answers.
const DefaultHoldDir = "/run/tricenter-bgp/holds"

// MaxHoldReason bounds a hold's reason (it is shown in status tables and
// logs).
const MaxHoldReason = 200

// Hold is an operator's (or the upgrade's) order to treat a service as
// unhealthy, whatever its check says, until it is released.
type Hold struct {
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// HoldResult is what holding a service did.
type HoldResult struct {
	Service string `json:"service"`
	Hold    Hold   `json:"hold"`
	// Already is true when the service was held before (the reason is
	// updated).
	Already bool `json:"already,omitempty"`
	// Withdrawn are the service's VIPs (as /32) that are no longer
	// announced; their withdrawal has been sent to every peer in Peers.
	Withdrawn []string `json:"withdrawn"`
	// Peers are the established sessions the withdrawals were sent to.
	Peers []string `json:"peers"`
	// Kept are VIPs that stay announced because another healthy, unheld
	// service lists them: VIP -> those services.
	Kept map[string][]string `json:"kept,omitempty"`
	// Lost names sessions that went down before the withdrawal reached
	// them: the router dropped the routes with the session, or keeps them
	// as stale for at most the graceful-restart time.
	Lost []string `json:"lost,omitempty"`
}

// ReleaseResult is what releasing a service did.
type ReleaseResult struct {
	Service string `json:"service"`
	// Released is false when the service was not held.
	Released bool `json:"released"`
	// Rise is how many consecutive passing checks announce the VIPs again
	// (0: the service has no check, its VIPs are announced at once).
	Rise int `json:"rise"`
}

// Withdrawal is a withdrawn prefix whose UPDATE has not been written to
// every established session yet.
type Withdrawal struct {
	Prefix string   `json:"prefix"`
	Peers  []string `json:"peers"`
}

// ErrUnknownService is wrapped when a hold names a service the agent's
// configuration does not have.
var ErrUnknownService = errors.New("no such service")

// serviceName is what a service may be called: its hold is a file of that
// name.
var serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckServiceName reports why name cannot name a service.
func CheckServiceName(name string) error {
	if !serviceName.MatchString(name) {
		return fmt.Errorf("service name %q: use letters, digits, '.', '_' and '-' (at most 63, starting with a letter or digit)", name)
	}
	return nil
}

// CheckHoldReason reports why reason cannot be a hold's reason.
func CheckHoldReason(reason string) error {
	switch {
	case strings.TrimSpace(reason) == "":
		return errors.New("the reason is empty: say why the service is held (it shows in status and logs)")
	case len(reason) > MaxHoldReason:
		return fmt.Errorf("the reason is %d bytes long: use at most %d", len(reason), MaxHoldReason)
	case strings.ContainsAny(reason, "\r\n"):
		return errors.New("the reason spans several lines: use one")
	}
	return nil
}

// HoldDirectory is the configured hold directory or DefaultHoldDir.
func (c *Config) HoldDirectory() string {
	if c.HoldDir != "" {
		return c.HoldDir
	}
	return DefaultHoldDir
}

// Service returns the configured service called name.
func (c *Config) Service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// UnknownService is the error for a hold on a service cfg lacks.
func UnknownService(cfg *Config, name string) error {
	var names []string
	for _, s := range cfg.Services {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("%w %q on %s: its agent configuration has no services", ErrUnknownService, name, cfg.Node)
	}
	return fmt.Errorf("%w %q on %s: use one of %s", ErrUnknownService, name, cfg.Node, strings.Join(names, ", "))
}

// HoldFile is the file that keeps service's hold in dir.
func HoldFile(dir, service string) string { return filepath.Join(dir, service) }

// WriteHold records a hold in dir (created when missing), atomically.
func WriteHold(dir, service string, h Hold) error {
	if err := CheckServiceName(service); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("hold directory: %w", err)
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(HoldFile(dir, service), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("recording the hold of %s: %w", service, err)
	}
	return nil
}

// RemoveHold deletes service's hold from dir; it reports whether there was
// one.
func RemoveHold(dir, service string) (bool, error) {
	if err := CheckServiceName(service); err != nil {
		return false, err
	}
	err := os.Remove(HoldFile(dir, service))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("removing the hold of %s: %w", service, err)
}

// ReadHolds reads every hold in dir (none when dir does not exist). A file
// that is not a hold (a stray name, unreadable JSON) is reported in the
// error but does not hide the others: an unreadable hold file still holds
// its service, with the problem as reason, so a damaged file never
// announces a VIP an operator withdrew.
func ReadHolds(dir string) (map[string]Hold, error) {
	out := map[string]Hold{}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("reading holds: %w", err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue // fsutil.WriteFileAtomic's temporary files
		}
		if CheckServiceName(name) != nil {
			errs = append(errs, fmt.Errorf("hold directory %s: %q is not a service name: remove it", dir, name))
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // released meanwhile
			}
			errs = append(errs, fmt.Errorf("reading the hold of %s: %w", name, err))
			out[name] = Hold{Reason: "unreadable hold file"}
			continue
		}
		var h Hold
		if err := json.Unmarshal(data, &h); err != nil || CheckHoldReason(h.Reason) != nil {
			errs = append(errs, fmt.Errorf("hold file %s is damaged (held anyway): release and hold again", filepath.Join(dir, name)))
			h = Hold{Reason: "damaged hold file " + filepath.Join(dir, name)}
			if fi, err := e.Info(); err == nil {
				h.Since = fi.ModTime()
			}
		}
		out[name] = h
	}
	return out, errors.Join(errs...)
}
