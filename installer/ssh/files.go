package ssh

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// FileState is what a remote path holds.
type FileState struct {
	Exists bool
	SHA256 string // hex
	Mode   fs.FileMode
	Owner  string // user:group
	Size   int64
}

// Stat reads the state of a regular file on the host, as root (so root-only
// files can be checksummed). A path that exists but is not a regular file
// is an error.
func (c *Client) Stat(ctx context.Context, p string) (FileState, error) {
	q := Quote(p)
	script := `if [ -f ` + q + ` ]; then stat -L -c '%a %U:%G %s' -- ` + q + ` && sha256sum -- ` + q +
		`; elif [ -e ` + q + ` ]; then echo notfile; else echo absent; fi`
	out, err := c.Output(ctx, c.AsRoot(script))
	if err != nil {
		return FileState{}, fmt.Errorf("reading %s: %w", p, err)
	}
	return parseStat(p, string(out))
}

func parseStat(p, out string) (FileState, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	switch {
	case len(lines) == 1 && lines[0] == "absent":
		return FileState{}, nil
	case len(lines) == 1 && lines[0] == "notfile":
		return FileState{}, fmt.Errorf("%s exists and is not a regular file: remove it or choose another path", p)
	case len(lines) != 2:
		return FileState{}, fmt.Errorf("reading %s: unexpected output %q", p, shorten(out, 120))
	}
	f := strings.Fields(lines[0])
	s := strings.Fields(lines[1])
	if len(f) != 3 || len(s) < 1 || len(s[0]) != 64 {
		return FileState{}, fmt.Errorf("reading %s: unexpected output %q", p, shorten(out, 120))
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil {
		return FileState{}, fmt.Errorf("reading %s: mode %q: %w", p, f[0], err)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return FileState{}, fmt.Errorf("reading %s: size %q: %w", p, f[2], err)
	}
	return FileState{Exists: true, Mode: fs.FileMode(mode), Owner: f[1], Size: size, SHA256: s[0]}, nil
}

// PutOptions describe the file Put writes.
type PutOptions struct {
	SHA256   string      // hex sha256 of the content; required, checked on the host
	Size     int64       // bytes; used for progress and concurrent writes
	Mode     fs.FileMode // default 0644
	Owner    string      // "user:group"; empty keeps root (or the login user)
	Progress func(n int64)
}

// Put streams r to a temporary file in dst's directory, fsyncs it, checks
// its sha256 on the host, sets mode and owner, then renames it over dst: a
// reader of dst sees the old file or the new one, never a partial one.
// Temporary files left by an interrupted earlier Put of the same dst are
// removed. Logins other than root upload into their home directory and
// finish with `sudo -n`.
func (c *Client) Put(ctx context.Context, r io.Reader, dst string, o PutOptions) error {
	if len(o.SHA256) != 64 {
		return fmt.Errorf("uploading %s: the sha256 of the content is required", dst)
	}
	if !path.IsAbs(dst) {
		return fmt.Errorf("uploading %s: the target path must be absolute", dst)
	}
	if o.Mode == 0 {
		o.Mode = 0o644
	}
	dir, base := path.Dir(dst), path.Base(dst)
	suffix := randHex(6)
	tmp := path.Join(dir, "."+base+".tricenter-"+suffix+".tmp")
	root := c.ep.user() == "root"
	staging := tmp
	if !root {
		// relative to the login's home directory
		staging = stagingPrefix(dst) + suffix
	}
	s, err := c.SFTP()
	if err != nil {
		return err
	}
	if root {
		if err := s.MkdirAll(dir); err != nil {
			return fmt.Errorf("creating %s: %w", dir, c.lost(err))
		}
	}
	f, err := s.OpenFile(staging, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("creating %s: %w", staging, c.lost(err))
	}
	cleanup := func() {
		if c.Alive() {
			_ = s.Remove(staging)
		}
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		cleanup()
		return fmt.Errorf("creating %s: %w", staging, c.lost(err))
	}
	cr := &countingReader{ctx: ctx, r: r, size: o.Size, progress: o.Progress}
	if _, err := f.ReadFromWithConcurrency(cr, 0); err != nil {
		f.Close()
		if ctx.Err() != nil {
			cleanup()
			return ctx.Err()
		}
		cleanup()
		return fmt.Errorf("writing %s: %w", staging, c.lost(err))
	}
	if cr.n != o.Size && o.Size > 0 {
		f.Close()
		cleanup()
		return fmt.Errorf("writing %s: the source gave %d bytes, expected %d", dst, cr.n, o.Size)
	}
	syncErr := f.Sync()
	if err := f.Close(); err != nil {
		cleanup()
		return fmt.Errorf("closing %s: %w", staging, c.lost(err))
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	if !root {
		home, err := s.Getwd()
		if err != nil {
			return fmt.Errorf("finding the home directory of %s: %w", c.ep.user(), c.lost(err))
		}
		fmt.Fprintf(&b, "mkdir -p -- %s\ncp -- %s %s\nrm -f -- %s\n", Quote(dir), Quote(path.Join(home, staging)), Quote(tmp), Quote(path.Join(home, staging)))
		fmt.Fprintf(&b, "chmod 600 -- %s\n", Quote(tmp))
		// Staging files of earlier, interrupted uploads of the same file.
		fmt.Fprintf(&b, "rm -f -- %s/%s*\n", Quote(home), stagingPrefix(dst))
	}
	if !root || syncErr != nil {
		fmt.Fprintf(&b, "sync -- %s\n", Quote(tmp))
	}
	fmt.Fprintf(&b, "s=$(sha256sum -- %s)\ns=${s%%%% *}\n", Quote(tmp))
	fmt.Fprintf(&b, "if [ \"$s\" != %s ]; then rm -f -- %s; echo \"sha256:$s\" >&2; exit 97; fi\n", o.SHA256, Quote(tmp))
	fmt.Fprintf(&b, "chmod %o -- %s\n", o.Mode.Perm(), Quote(tmp))
	if o.Owner != "" {
		fmt.Fprintf(&b, "chown -- %s %s\n", Quote(o.Owner), Quote(tmp))
	}
	fmt.Fprintf(&b, "mv -f -- %s %s\n", Quote(tmp), Quote(dst))
	fmt.Fprintf(&b, "sync -- %s\n", Quote(dir))
	// Temporaries of earlier, interrupted uploads of the same file.
	fmt.Fprintf(&b, "rm -f -- %s/.%s.tricenter-*.tmp\n", Quote(dir), quoteGlobSafe(base))
	err = c.Run(ctx, c.AsRoot(b.String()), nil, nil, nil)
	var ee *ExitError
	if errors.As(err, &ee) && ee.Status == 97 {
		return fmt.Errorf("uploading %s: %w: expected sha256:%s, the host computed %s", dst, ErrChecksumMismatch, o.SHA256, ee.Stderr)
	}
	if err != nil {
		if !root {
			cleanup()
		}
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	return nil
}

// quoteGlobSafe quotes a file name for use before a glob: every character
// that is not plain is backslash-escaped so only the trailing * globs.
func quoteGlobSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// stagingPrefix names the staging files of uploads to dst in a login's
// home directory, so a later upload of the same file can remove the ones an
// interrupted run left.
func stagingPrefix(dst string) string {
	h := sha256.Sum256([]byte(dst))
	return ".tricenter-upload-" + hex.EncodeToString(h[:6]) + "-"
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// countingReader reports progress, stops on cancellation, and tells the
// SFTP client the size so it writes concurrently.
type countingReader struct {
	ctx      context.Context
	r        io.Reader
	n        int64
	size     int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.progress != nil {
		c.progress(int64(n))
	}
	return n, err
}
