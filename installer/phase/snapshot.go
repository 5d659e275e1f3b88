package phase

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// A dry run judges most file writes from one look at each host. The first
// write under one of Manager.SnapshotDirs on a host lists those
// directories in one session: every entry's type, mode, owner and size,
// and the sha256 of every regular file up to snapshotMaxSize. Later writes
// under them are judged from that listing instead of a session each. What
// the listing cannot settle — a larger file, a symbolic link or anything
// else that is not a plain file, a path below one — goes through its own
// session, as without a listing. The listing lives in the manager's Host,
// so in one run only: an apply never uses it, and checks each file in the
// session that writes it, right before writing.
//
// The digests of files with secret content come back over the session's
// stdout into this process's memory only, like the content this process
// already holds; they are never logged, recorded or put on a command line.

// snapshotMaxSize bounds the files the listing hashes (configuration,
// certificates, units: binaries go through InstallFiles and its record).
const snapshotMaxSize = 1 << 20

// snapshotScript lists the directories given as arguments. Output lines:
// "dir D" (D is a directory, listed in full below), "e TYPE MODE
// USER:GROUP SIZE PATH" per entry (find's %y type letter), then sha256sum
// lines "HEX  PATH" for the regular files up to the size, "nodir D" (D
// does not exist), "other D" (D exists and is not a plain directory), and
// "end". A find that fails prints "error D".
const snapshotScript = `for d in "$@"; do ` +
	`if [ -d "$d" ] && [ ! -L "$d" ]; then echo "dir $d"; ` +
	`find "$d" -mindepth 1 -printf 'e %y %m %u:%g %s %p\n' || echo "error $d"; ` +
	`find "$d" -mindepth 1 -type f -size -1025k -exec sha256sum -- {} + || echo "error $d"; ` +
	`elif [ -e "$d" ] || [ -L "$d" ]; then echo "other $d"; else echo "nodir $d"; fi; done; echo end`

// hostSnapshot is one listing of a host's SnapshotDirs.
type hostSnapshot struct {
	once sync.Once
	err  error
	// dirs are the roots: true when listed in full, false when absent.
	dirs map[string]bool
	// kind is each listed entry's type letter (f, d, l, …).
	kind  map[string]string
	files map[string]ssh.FileState // plain files with their sha256
}

// snapshotRoot is the SnapshotDirs entry p is under ("" for none).
func (m *Manager) snapshotRoot(p string) string {
	for _, d := range m.SnapshotDirs {
		if d = strings.TrimSuffix(d, "/"); strings.HasPrefix(p, d+"/") {
			return d
		}
	}
	return ""
}

// snapState returns the state of the file at p from the host's listing,
// taking the listing on first use; ok is false when the listing does not
// settle it (not a dry run, p outside SnapshotDirs, not a plain file up to
// the size, the listing failed).
func (h *Host) snapState(ctx context.Context, p string) (st ssh.FileState, ok bool) {
	if !h.m.DryRun || h.m.snapshotRoot(p) == "" {
		return st, false
	}
	s := &h.snap
	s.once.Do(func() { s.err = h.takeSnapshot(ctx) })
	if s.err != nil {
		return st, false
	}
	if f, ok := s.files[p]; ok {
		return f, true
	}
	if _, listed := s.kind[p]; listed {
		return st, false // listed, not a hashed plain file
	}
	// Not listed: absent when its nearest listed ancestor is a directory
	// listed in full (or a root that is absent).
	root := h.m.snapshotRoot(p)
	for a := path.Dir(p); ; a = path.Dir(a) {
		if a == root {
			_, known := s.dirs[root]
			return st, known
		}
		if k, listed := s.kind[a]; listed {
			return st, k == "d"
		}
		if a == "/" || a == "." {
			return st, false
		}
	}
}

// takeSnapshot lists the host's SnapshotDirs in one session.
func (h *Host) takeSnapshot(ctx context.Context) error {
	args := make([]string, len(h.m.SnapshotDirs))
	for i, d := range h.m.SnapshotDirs {
		args[i] = shell.Quote(d)
	}
	out, err := h.Query(ctx, "sh -c "+shell.Quote(snapshotScript)+" tricenter-snapshot "+strings.Join(args, " "))
	if err != nil {
		h.m.Logger.Debug("Listing the managed directories failed: checking each file in its own session", "host", h.Name, "err", err)
		return err
	}
	s, err := parseSnapshot(out)
	if err != nil {
		h.m.Logger.Debug("Listing the managed directories failed: checking each file in its own session", "host", h.Name, "err", err)
		return err
	}
	h.snap.dirs, h.snap.kind, h.snap.files = s.dirs, s.kind, s.files
	return nil
}

// parseSnapshot reads snapshotScript's output; a listing that did not end
// or reported an error is refused as a whole.
func parseSnapshot(out string) (*hostSnapshot, error) {
	s := &hostSnapshot{dirs: map[string]bool{}, kind: map[string]string{}, files: map[string]ssh.FileState{}}
	sums := map[string]string{}
	ended := false
	// Errors name the line by number, never by content: a line may hold
	// the digest of a file with secret content.
	for n, line := range strings.Split(out, "\n") {
		switch {
		case line == "":
		case line == "end":
			ended = true
		case strings.HasPrefix(line, "dir "):
			s.dirs[line[4:]] = true
		case strings.HasPrefix(line, "nodir "):
			s.dirs[line[6:]] = false
		case strings.HasPrefix(line, "other "):
		case strings.HasPrefix(line, "error "):
			return nil, fmt.Errorf("listing %s failed", line[6:])
		case strings.HasPrefix(line, "e "):
			f := strings.SplitN(line[2:], " ", 5)
			if len(f) != 5 {
				return nil, fmt.Errorf("unexpected listing entry on line %d", n+1)
			}
			p := f[4]
			s.kind[p] = f[0]
			if f[0] != "f" {
				continue
			}
			mode, err := strconv.ParseUint(f[1], 8, 32)
			if err != nil {
				return nil, fmt.Errorf("unexpected mode on line %d", n+1)
			}
			size, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("unexpected size on line %d", n+1)
			}
			s.files[p] = ssh.FileState{Exists: true, Mode: fs.FileMode(mode), Owner: f[2], Size: size}
		case len(line) > 66 && line[64:66] == "  " && !strings.HasPrefix(line, `\`):
			sums[line[66:]] = line[:64]
		case strings.HasPrefix(line, `\`):
			// sha256sum escapes names with a backslash or newline: such a
			// file is checked in its own session.
		default:
			return nil, fmt.Errorf("unexpected listing line %d", n+1)
		}
	}
	if !ended {
		return nil, fmt.Errorf("the listing ended early")
	}
	for p, f := range s.files {
		sum, ok := sums[p]
		if !ok || f.Size > snapshotMaxSize {
			delete(s.files, p) // not hashed: checked in its own session
			continue
		}
		f.SHA256 = sum
		s.files[p] = f
	}
	return s, nil
}

// putFromSnapshot is put in a dry run for a file the listing settles: the
// same decisions and change records as the session would give.
func (h *Host) putFromSnapshot(ctx context.Context, st ssh.FileState, remote, sum string, o FileOptions, res FileResult, desc string) (FileResult, error) {
	if st.Exists && st.SHA256 == sum {
		fix := fixes(st, remote, o)
		if len(fix) == 0 {
			h.m.Logger.Debug("Unchanged", "host", h.Name, "path", remote)
			return res, nil
		}
		res.Changed = true
		return res, h.Mutate(ctx, "set "+strings.Join(fix, "; "), nil)
	}
	res.Changed = true
	return res, h.Mutate(ctx, desc, nil)
}
