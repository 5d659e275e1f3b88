package phase

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// checksums computes the sha256 of each local file once per run, however
// many hosts upload it; it recomputes when size or mtime change. A file
// rewritten in place with its size and mtime kept would keep a stale
// digest here, but nothing unverified is installed because of it: every
// host checks the bytes it received against the digest before the rename,
// so the upload fails (ssh.ErrChecksumMismatch). With FileOptions.SHA256
// the digest must also be the one the artifact manifest lists.
type checksums struct {
	mu sync.Mutex
	m  map[string]*sumEntry
}

type sumEntry struct {
	done  chan struct{}
	size  int64
	mtime time.Time
	sum   string
	err   error
}

func newChecksums() *checksums { return &checksums{m: map[string]*sumEntry{}} }

func (c *checksums) get(path string) (sum string, size int64, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	c.mu.Lock()
	e := c.m[path]
	if e != nil && (e.size != st.Size() || !e.mtime.Equal(st.ModTime())) {
		e = nil
	}
	if e == nil {
		e = &sumEntry{done: make(chan struct{}), size: st.Size(), mtime: st.ModTime()}
		c.m[path] = e
		c.mu.Unlock()
		e.sum, e.err = fsutil.FileSHA256(path)
		close(e.done)
	} else {
		c.mu.Unlock()
		<-e.done
	}
	return e.sum, e.size, e.err
}
