package nspawn

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// registryDir holds one entry per running lab on this machine, so that a
// lab whose process was killed (a test binary past its timeout, a session
// ended with SIGKILL) is found and swept by the next lab, whatever
// directory or checkout either one runs from. /run is emptied at boot, as
// is everything a lab leaves behind.
var registryDir = "/run/tricenter-lab"

// registration names a lab's owner process and what Sweep needs.
type registration struct {
	PID        int    `json:"pid"`
	Start      uint64 `json:"start"`
	NetID      string `json:"netID"`
	MachinesID string `json:"machinesID"`
	Dir        string `json:"dir"`
}

// register records this process as the owner of the lab; the returned
// path is removed by Close.
func register(netID, machinesID, dir string) (string, error) {
	start, err := labnet.ProcStart(os.Getpid())
	if err != nil {
		return "", err
	}
	if abs, err := filepath.EvalSymlinks(dir); err == nil {
		dir = abs
	}
	b, err := json.Marshal(registration{PID: os.Getpid(), Start: start, NetID: netID, MachinesID: machinesID, Dir: dir})
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(registryDir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(registryDir, machinesID+".json")
	if err := fsutil.WriteFileAtomic(path, b, 0o600); err != nil {
		return "", fmt.Errorf("registering the lab: %w", err)
	}
	return path, nil
}

// SweepOrphans removes what every registered lab whose owner process is
// gone left behind (machines, mounts, namespaces, links and so the host
// routes through them) and its registration. Labs whose owner still runs
// are left alone. It returns what it removed.
func SweepOrphans(log *slog.Logger) ([]string, error) {
	entries, err := os.ReadDir(registryDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(registryDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r registration
		if err := json.Unmarshal(b, &r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		if labnet.Alive(r.PID, r.Start) {
			continue
		}
		log.Warn("Removing what a lab whose process is gone left behind", "pid", r.PID, "dir", r.Dir)
		got, err := Sweep(r.NetID, r.MachinesID, r.Dir)
		removed = append(removed, got...)
		if err != nil {
			errs = append(errs, fmt.Errorf("lab of process %d (%s): %w", r.PID, r.Dir, err))
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
