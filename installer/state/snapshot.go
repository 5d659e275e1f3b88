package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// Directories of a cluster's state that a snapshot leaves out: artifacts
// are a cache that can be fetched again, etcd snapshots are backups kept
// where the operator put them.
var snapshotSkip = []string{"artifacts", "snapshots"}

// Snapshot reads every file of one cluster's state directory (dir, as
// Dir.Path) except artifacts/ and snapshots/: relative slash-separated
// path → content. The Terraform provider keeps this map in its state
// instead of a directory. Symbolic links and other non-regular files are
// refused. A directory that does not exist gives an error.
func Snapshot(dir string) (map[string]string, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			for _, s := range snapshotSkip {
				if rel == s {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file: move it out of the state directory", p)
		}
		if strings.HasPrefix(path.Base(rel), ".") && strings.Contains(path.Base(rel), ".tmp") {
			return nil // an atomic write's leftover
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading state directory %s: %w", dir, err)
	}
	return files, nil
}

// ErrUnsafePath is returned by Restore for a key that is not a clean
// relative path inside the directory.
var ErrUnsafePath = errors.New("path escapes the state directory")

// Restore writes files (as Snapshot returns them) under dir: directories
// 0700, every file atomically with the mode the CLI gives it — public
// certificates and keys (.crt, .pub) 0644, everything else (private keys,
// prior.json) 0600. Keys must be clean relative paths that stay inside
// dir and outside artifacts/ and snapshots/; nothing is written when one
// is not.
func Restore(dir string, files map[string]string) error {
	names := make([]string, 0, len(files))
	for name := range files {
		if err := checkRel(name); err != nil {
			return fmt.Errorf("state file %q: %w", name, err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	for _, name := range names {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("restoring %s: %w", name, err)
		}
		if err := fsutil.WriteFileAtomic(p, []byte(files[name]), FileMode(name)); err != nil {
			return fmt.Errorf("restoring %s: %w", name, err)
		}
	}
	return nil
}

// FileMode is the mode Restore gives a state file: 0644 for certificates
// and public keys, 0600 for the rest.
func FileMode(name string) os.FileMode { return pki.FileMode(name) }

func checkRel(name string) error {
	if name == "" || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return ErrUnsafePath
	}
	if path.IsAbs(name) || path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return ErrUnsafePath
	}
	first, _, _ := strings.Cut(name, "/")
	for _, s := range snapshotSkip {
		if first == s {
			return fmt.Errorf("%s/ is not part of a snapshot", s)
		}
	}
	return nil
}
