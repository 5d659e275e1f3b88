package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Meta describes one stored snapshot; it is the <ID>.json next to the
// sealed file. Nothing in it is secret.
type Meta struct {
	// ID is "<cluster>-<taken at, UTC, 20060102T150405Z>-<member>"
	// (SnapshotID), and the files' base name.
	ID string `json:"id"`
	// Format is the sealed file's format (the Format constant).
	Format  string `json:"format"`
	Cluster string `json:"cluster"`
	// TakenAt is when the snapshot was taken (UTC, whole seconds).
	TakenAt time.Time `json:"takenAt"`
	// Member is the etcd member the snapshot was streamed from, and
	// MemberCenter its center.
	Member       string `json:"member"`
	MemberCenter string `json:"memberCenter"`
	// StoredOn is the server that holds the files, StoredCenter its
	// center.
	StoredOn     string `json:"storedOn"`
	StoredCenter string `json:"storedCenter"`
	// Revision is the cluster's revision read (linearizably) just before
	// the snapshot: the snapshot holds it or a later one.
	Revision int64 `json:"revision"`
	// Keys is the number of keys at Revision.
	Keys int64 `json:"keys"`
	// EtcdVersion is the member's etcd version.
	EtcdVersion string `json:"etcdVersion"`
	// PlainBytes is the size of the snapshot stream as etcd sent it (the
	// database followed by its sha256, as etcdctl snapshot save writes
	// it); SealedBytes the size of the sealed file.
	PlainBytes  int64 `json:"plainBytes"`
	SealedBytes int64 `json:"sealedBytes"`
	// SHA256 is the hex sha256 of the sealed file.
	SHA256 string `json:"sha256"`
	// Recipient is the public key (EncodeRecipient) the file is sealed
	// for: the identity that opens it is the one whose public key this is.
	Recipient string `json:"recipient"`
}

// File extensions in a Dir.
const (
	SealedExt = ".sealed"
	MetaExt   = ".json"
)

// idTime is the layout of the time in an ID.
const idTime = "20060102T150405Z"

// tempPrefix starts the names of files being written; Prune removes the
// ones older than staleTemp (a Take that was killed).
const (
	tempPrefix = ".tmp-"
	staleTemp  = time.Hour
	lockFile   = ".lock"
)

// ErrBusy is returned when another process writes or prunes the same
// directory.
var ErrBusy = errors.New("another tricenter-snapshot is writing or pruning this directory")

// ValidName checks a cluster, member, server or center name: letters,
// digits, '.', '_' and '-', not starting with '.' or '-'.
func ValidName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 128 {
		return fmt.Errorf("%d characters, at most 128", len(s))
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("%q: character %q at %d: use letters, digits, '.', '_' and '-'", s, r, i)
		}
	}
	if s[0] == '.' || s[0] == '-' {
		return fmt.Errorf("%q starts with %q", s, s[0])
	}
	return nil
}

// SnapshotID is the ID of a snapshot of cluster taken at t from member.
func SnapshotID(cluster string, t time.Time, member string) (string, error) {
	if err := ValidName(cluster); err != nil {
		return "", fmt.Errorf("cluster name: %w", err)
	}
	if err := ValidName(member); err != nil {
		return "", fmt.Errorf("member name: %w", err)
	}
	return cluster + "-" + t.UTC().Format(idTime) + "-" + member, nil
}

// Validate checks a record: its names, that its ID is SnapshotID of its
// fields, the sizes, the hash and the recipient.
func (m Meta) Validate() error {
	if err := m.validateTaken(); err != nil {
		return err
	}
	if m.SealedBytes < int64(HeaderSize+tagSize) {
		return fmt.Errorf("sealedBytes %d: a sealed file has at least %d", m.SealedBytes, HeaderSize+tagSize)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("sha256: not %d hex characters", 2*sha256.Size)
	}
	return nil
}

// validateTaken checks what is known before the sealed file is written.
func (m Meta) validateTaken() error {
	id, err := SnapshotID(m.Cluster, m.TakenAt, m.Member)
	if err != nil {
		return err
	}
	if m.ID != id {
		return fmt.Errorf("id %q: want %q (cluster, takenAt and member)", m.ID, id)
	}
	if m.Format != Format {
		return fmt.Errorf("format %q: this version reads %q", m.Format, Format)
	}
	for _, f := range []struct{ name, v string }{{"memberCenter", m.MemberCenter}, {"storedOn", m.StoredOn}, {"storedCenter", m.StoredCenter}} {
		if err := ValidName(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if m.Revision < 1 || m.Keys < 0 || m.PlainBytes < 0 {
		return fmt.Errorf("revision %d, keys %d, plainBytes %d: want a revision of at least 1 and no negative count", m.Revision, m.Keys, m.PlainBytes)
	}
	if _, err := ParseRecipient(m.Recipient); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	return nil
}

// Dir is a directory of sealed snapshots: <ID>.sealed and <ID>.json,
// both 0600, in a 0700 directory. A .sealed without its .json is a
// leftover of a Take that did not finish: List ignores it and Prune
// removes it.
type Dir struct{ Path string }

// SealedPath is the sealed file of snapshot id.
func (d Dir) SealedPath(id string) string { return filepath.Join(d.Path, id+SealedExt) }

// MetaPath is the record of snapshot id.
func (d Dir) MetaPath(id string) string { return filepath.Join(d.Path, id+MetaExt) }

// Write stores a snapshot: sealed writes the sealed bytes, which go to a
// temporary file in the directory (hashed and counted on the way), then,
// fsynced, renamed to <ID>.sealed, and returns how many plain bytes it
// sealed; then m, completed with PlainBytes, SHA256 and SealedBytes, is
// written the same way to <ID>.json. m must Validate once those are set
// (they are ignored on the way in). Write creates the directory (0700)
// and refuses an ID that is already stored. What a failure can leave is
// a sealed file without its record (when the record cannot be written)
// or the temporary file of a killed process: Prune removes both.
func (d Dir) Write(m Meta, sealed func(w io.Writer) (plainBytes int64, err error)) (Meta, error) {
	if err := m.validateTaken(); err != nil {
		return Meta{}, fmt.Errorf("snapshot record: %w", err)
	}
	unlock, err := d.lock()
	if err != nil {
		return Meta{}, err
	}
	defer unlock()
	if _, err := os.Lstat(d.MetaPath(m.ID)); err == nil {
		return Meta{}, fmt.Errorf("snapshot %s is already stored in %s", m.ID, d.Path)
	}
	h := sha256.New()
	var n int64
	err = d.writeAtomic(m.ID+SealedExt, func(f *os.File) error {
		cw := &countWriter{w: io.MultiWriter(f, h), n: &n}
		plain, err := sealed(cw)
		m.PlainBytes = plain
		return err
	})
	if err != nil {
		return Meta{}, err
	}
	m.SHA256, m.SealedBytes = hex.EncodeToString(h.Sum(nil)), n
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Meta{}, err
	}
	b = append(b, '\n')
	if err := d.writeAtomic(m.ID+MetaExt, func(f *os.File) error { _, err := f.Write(b); return err }); err != nil {
		return Meta{}, err
	}
	return m, nil
}

type countWriter struct {
	w io.Writer
	n *int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

// writeAtomic writes name in the directory through a temporary file:
// write, fsync, rename, fsync the directory.
func (d Dir) writeAtomic(name string, write func(f *os.File) error) error {
	f, err := os.CreateTemp(d.Path, tempPrefix+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	err = f.Chmod(0o600)
	if err == nil {
		err = write(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(d.Path, name), err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Path, name)); err != nil {
		return err
	}
	return syncDir(d.Path)
}

func syncDir(path string) error {
	dir, err := os.Open(path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// lock creates the directory (0700) and takes its lock file, failing
// with ErrBusy while another process holds it.
func (d Dir) lock() (unlock func(), err error) {
	if d.Path == "" {
		return nil, errors.New("no snapshot directory")
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(d.Path, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(d.Path, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", d.Path, ErrBusy)
		}
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// List reads every record, newest first (by TakenAt, then ID). A record
// that does not parse or Validate, or whose name is not its ID, is an
// error naming the file. A missing directory lists nothing.
func (d Dir) List() ([]Meta, error) {
	ents, err := os.ReadDir(d.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Meta
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, MetaExt) {
			continue
		}
		m, err := d.read(name)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Meta) int {
		if c := b.TakenAt.Compare(a.TakenAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// maxMetaSize bounds a record file.
const maxMetaSize = 64 << 10

func (d Dir) read(name string) (Meta, error) {
	path := filepath.Join(d.Path, name)
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetaSize+1))
	if err != nil {
		return Meta{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxMetaSize {
		return Meta{}, fmt.Errorf("snapshot record %s: larger than %d bytes", path, maxMetaSize)
	}
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("snapshot record %s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return Meta{}, fmt.Errorf("snapshot record %s: %w", path, err)
	}
	if m.ID+MetaExt != name {
		return Meta{}, fmt.Errorf("snapshot record %s: its id is %s", path, m.ID)
	}
	return m, nil
}

// ErrMismatch is wrapped by Check when the sealed file is not the one
// its record describes.
var ErrMismatch = errors.New("sealed file differs from its record")

// Check hashes m's sealed file and compares its size and sha256 with m.
func (d Dir) Check(m Meta) error {
	path := d.SealedPath(m.ID)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if n != m.SealedBytes {
		return fmt.Errorf("%w: %s has %d bytes, the record says %d", ErrMismatch, path, n, m.SealedBytes)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != m.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, the record says %s", ErrMismatch, path, sum, m.SHA256)
	}
	return nil
}

// Prune keeps the newest keep snapshots (keep ≥ 1) and removes the older
// ones (their .sealed, then their .json), every .sealed without a .json
// (a Take that did not finish) and temporary files older than an hour.
// It returns the removed file names.
func (d Dir) Prune(keep int) (removed []string, err error) {
	return d.prune(keep, time.Now())
}

func (d Dir) prune(keep int, now time.Time) (removed []string, err error) {
	if keep < 1 {
		return nil, fmt.Errorf("keep %d: keep at least 1 snapshot", keep)
	}
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	metas, err := d.List()
	if err != nil {
		return nil, err
	}
	rm := func(name string) error {
		if err := os.Remove(filepath.Join(d.Path, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = append(removed, name)
		return nil
	}
	var errs []error
	recorded := map[string]bool{}
	for i, m := range metas {
		if i < keep {
			recorded[m.ID] = true
			continue
		}
		// The record last: a record without its file would be listed.
		if err := rm(m.ID + SealedExt); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := rm(m.ID + MetaExt); err != nil {
			errs = append(errs, err)
		}
		if _, err := os.Lstat(filepath.Join(d.Path, m.ID+RehearsalExt)); err == nil {
			if err := rm(m.ID + RehearsalExt); err != nil {
				errs = append(errs, err)
			}
		}
	}
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		return removed, err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case !e.Type().IsRegular():
		case strings.HasPrefix(name, tempPrefix):
			info, err := e.Info()
			if err == nil && now.Sub(info.ModTime()) > staleTemp {
				if err := rm(name); err != nil {
					errs = append(errs, err)
				}
			}
		case strings.HasSuffix(name, SealedExt) && !strings.HasPrefix(name, "."):
			id := strings.TrimSuffix(name, SealedExt)
			if recorded[id] {
				continue
			}
			if _, err := os.Lstat(d.MetaPath(id)); errors.Is(err, os.ErrNotExist) {
				if err := rm(name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if len(removed) > 0 {
		if err := syncDir(d.Path); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
