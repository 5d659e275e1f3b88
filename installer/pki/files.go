package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// Files is where a Store keeps its files, by relative slash-separated
// name ("etcd/ca.crt", "kubernetes/sa.key"). DirFiles keeps them in a
// directory (the CLI's state directory), MemFiles in memory (the
// provider's, filled from and snapshotted to Terraform state).
type Files interface {
	// ReadFile returns the content of name; an error wrapping
	// fs.ErrNotExist when there is no such file.
	ReadFile(name string) ([]byte, error)
	// WriteFile replaces name with data, whole (readers see the old content
	// or the new one), with permissions perm: 0600 for private keys, 0644
	// for certificates and public keys.
	WriteFile(name string, data []byte, perm fs.FileMode) error
	// Stat returns the permissions of name; an error wrapping
	// fs.ErrNotExist when there is no such file.
	Stat(name string) (fs.FileMode, error)
	// List returns the name of every file, sorted.
	List() ([]string, error)
	// Where names a file in messages (a path on disk, a key in the state).
	Where(name string) string
}

// FileMode is the mode a file of a store gets: 0644 for certificates and
// public keys, 0600 for the rest (private keys).
func FileMode(name string) fs.FileMode {
	switch path.Ext(name) {
	case ".crt", ".pub":
		return 0o644
	}
	return 0o600
}

// errBadName is wrapped for a file name that is not a clean relative path.
var errBadName = errors.New("not a clean relative path")

func checkName(name string) error {
	if name == "" || path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") ||
		strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("store file %q: %w", name, errBadName)
	}
	return nil
}

// DirFiles keeps a store's files in the directory Path: every write goes
// through a temporary file, fsync and rename (internal/fsutil), missing
// directories are created 0700.
type DirFiles struct {
	Path string
}

var _ Files = DirFiles{}

func (d DirFiles) path(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return filepath.Join(d.Path, filepath.FromSlash(name)), nil
}

// ReadFile implements Files.
func (d DirFiles) ReadFile(name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// WriteFile implements Files.
func (d DirFiles) WriteFile(name string, data []byte, perm fs.FileMode) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(p, data, perm)
}

// Stat implements Files.
func (d DirFiles) Stat(name string) (fs.FileMode, error) {
	p, err := d.path(name)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file: move it away", p)
	}
	return st.Mode().Perm(), nil
}

// List implements Files. A directory that does not exist holds no file;
// leftovers of interrupted atomic writes are not listed.
func (d DirFiles) List() ([]string, error) {
	var out []string
	err := filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		if b := e.Name(); strings.HasPrefix(b, ".") && strings.Contains(b, ".tmp") {
			return nil
		}
		rel, err := filepath.Rel(d.Path, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	slices.Sort(out)
	return out, err
}

// Where implements Files: the file's path.
func (d DirFiles) Where(name string) string { return filepath.Join(d.Path, filepath.FromSlash(name)) }

// MemFiles keeps a store's files in memory, nothing on disk. It is safe for
// concurrent use.
type MemFiles struct {
	// Prefix goes before a file's name in messages (e.g. "pki/", where
	// the files sit in the engine state).
	Prefix string

	mu    sync.Mutex
	files map[string]memFile
}

type memFile struct {
	data []byte
	mode fs.FileMode
}

var _ Files = (*MemFiles)(nil)

// NewMemFiles returns a memory store holding files (copied), each with
// the mode FileMode gives its name.
func NewMemFiles(files map[string][]byte) (*MemFiles, error) {
	m := &MemFiles{files: make(map[string]memFile, len(files))}
	for name, b := range files {
		if err := checkName(name); err != nil {
			return nil, err
		}
		m.files[name] = memFile{data: slices.Clone(b), mode: FileMode(name)}
	}
	return m, nil
}

// ReadFile implements Files.
func (m *MemFiles) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: m.Where(name), Err: fs.ErrNotExist}
	}
	return slices.Clone(f.data), nil
}

// WriteFile implements Files.
func (m *MemFiles) WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files == nil {
		m.files = map[string]memFile{}
	}
	m.files[name] = memFile{data: slices.Clone(data), mode: perm.Perm()}
	return nil
}

// Stat implements Files.
func (m *MemFiles) Stat(name string) (fs.FileMode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return 0, &fs.PathError{Op: "stat", Path: m.Where(name), Err: fs.ErrNotExist}
	}
	return f.mode, nil
}

// List implements Files.
func (m *MemFiles) List() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.files))
	for name := range m.files {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// Remove deletes name (no error when there is none).
func (m *MemFiles) Remove(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, name)
}

// Where implements Files: the prefixed name.
func (m *MemFiles) Where(name string) string { return m.Prefix + name }

// Snapshot returns a copy of every file.
func (m *MemFiles) Snapshot() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.files))
	for name, f := range m.files {
		out[name] = slices.Clone(f.data)
	}
	return out
}
