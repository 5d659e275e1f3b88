package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// RehearsalExt names a snapshot's rehearsal record in a Dir: the last
// restore of that snapshot into a throw-away etcd (Rehearse).
const RehearsalExt = ".rehearsal"

// Rehearsal is a snapshot restored into a throw-away etcd and read back:
// the proof that the backup restores, compared with what its record says.
type Rehearsal struct {
	ID string `json:"id"`
	// At is when the rehearsal ran; Took how long it took (restore, start,
	// reads).
	At   time.Time     `json:"at"`
	Took time.Duration `json:"took"`
	// Where says where the throw-away etcd ran (the host's name).
	Where string `json:"where"`
	// EtcdVersion is the version of the etcd that served the restore.
	EtcdVersion string `json:"etcdVersion"`
	// Revision is the restored member's revision; it must be at least the
	// record's.
	Revision int64 `json:"revision"`
	// Keys is the count of keys the restored member holds at the record's
	// revision; it must equal the record's Keys.
	Keys int64 `json:"keys"`
	// OK is true when both match; Detail says what differs otherwise.
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// RehearseOptions say what to restore and with which binaries.
type RehearseOptions struct {
	// DB is the opened snapshot (as etcd streamed it: the database and the
	// sha256 etcd appends, which the restore checks).
	DB string
	// Meta is the snapshot's record.
	Meta Meta
	// Etcdutl and Etcd are the binaries (of the cluster's etcd release).
	Etcdutl, Etcd string
	// Dir is a scratch directory for the restored data (created 0700 if
	// needed; what Rehearse writes in it is removed).
	Dir string
	// Timeout bounds the whole rehearsal (default 5 min).
	Timeout time.Duration
	Log     *slog.Logger
}

const rehearsalName = "rehearsal"

// Rehearse restores the snapshot into a new single-member etcd on
// loopback (etcdutl snapshot restore, then etcd on the restored data,
// plain HTTP on 127.0.0.1 ports of its own), reads the member's revision
// and the count of keys at the record's revision, and compares them with
// the record. A failure to restore or serve is an error; a restore that
// serves other counts is a Rehearsal with OK false.
func Rehearse(ctx context.Context, o RehearseOptions) (Rehearsal, error) {
	start := time.Now()
	r := Rehearsal{ID: o.Meta.ID, At: start.UTC().Truncate(time.Second)}
	if h, err := os.Hostname(); err == nil {
		r.Where = h
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return r, fmt.Errorf("rehearsal of %s: %w", o.Meta.ID, err)
	}
	data := filepath.Join(o.Dir, "data")
	defer os.RemoveAll(data)
	ports, err := freePorts(2)
	if err != nil {
		return r, fmt.Errorf("rehearsal of %s: %w", o.Meta.ID, err)
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cluster := rehearsalName + "=" + peer

	restore := exec.CommandContext(ctx, o.Etcdutl, "snapshot", "restore", o.DB, "--data-dir", data,
		"--name", rehearsalName, "--initial-cluster", cluster, "--initial-advertise-peer-urls", peer,
		"--initial-cluster-token", "tricenter-rehearsal")
	if out, err := restore.CombinedOutput(); err != nil {
		return r, fmt.Errorf("rehearsal of %s: %s snapshot restore: %w\n%s", o.Meta.ID, filepath.Base(o.Etcdutl), err, tail(out, 1500))
	}
	o.Log.Debug("Restored the snapshot", "id", o.Meta.ID, "dataDir", data)

	var out lockedBuffer
	etcd := exec.Command(o.Etcd, "--name", rehearsalName, "--data-dir", data,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
		"--log-level", "warn")
	etcd.Stdout, etcd.Stderr = &out, &out
	etcd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := etcd.Start(); err != nil {
		return r, fmt.Errorf("rehearsal of %s: starting %s: %w", o.Meta.ID, filepath.Base(o.Etcd), err)
	}
	// done is closed when the process has exited; waitErr says how.
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = etcd.Wait(); close(done) }()
	defer func() {
		// Stop it by its pid, then its group; wait for it.
		_ = etcd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-etcd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		return r, fmt.Errorf("rehearsal of %s: %w", o.Meta.ID, err)
	}
	defer cli.Close()
	var st *clientv3.StatusResponse
	for {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		st, err = cli.Status(sctx, client)
		scancel()
		if err == nil {
			break
		}
		select {
		case <-done:
			return r, fmt.Errorf("rehearsal of %s: the restored etcd exited: %w\n%s", o.Meta.ID, waitErr, tail(out.Bytes(), 1500))
		case <-ctx.Done():
			return r, fmt.Errorf("rehearsal of %s: the restored etcd did not answer: %w\n%s", o.Meta.ID, err, tail(out.Bytes(), 1500))
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.EtcdVersion = st.Version
	g, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly(), clientv3.WithRev(o.Meta.Revision))
	if err != nil {
		return r, fmt.Errorf("rehearsal of %s: counting keys at revision %d: %w", o.Meta.ID, o.Meta.Revision, err)
	}
	r.Revision, r.Keys = g.Header.Revision, g.Count
	var diffs []string
	if r.Revision < o.Meta.Revision {
		diffs = append(diffs, fmt.Sprintf("restored revision %d is older than the recorded %d", r.Revision, o.Meta.Revision))
	}
	if r.Keys != o.Meta.Keys {
		diffs = append(diffs, fmt.Sprintf("%d keys at revision %d, the record says %d", r.Keys, o.Meta.Revision, o.Meta.Keys))
	}
	r.OK, r.Detail = len(diffs) == 0, strings.Join(diffs, "; ")
	r.Took = time.Since(start).Round(time.Millisecond)
	return r, nil
}

// WriteRehearsal records r next to its snapshot (atomically, 0600); a
// Prune that removes the snapshot removes it too.
func (d Dir) WriteRehearsal(r Rehearsal) error {
	if err := ValidName(r.ID); err != nil {
		return fmt.Errorf("rehearsal: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return d.writeAtomic(r.ID+RehearsalExt, func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// Rehearsal reads the rehearsal record of snapshot id (nil, nil: none).
func (d Dir) Rehearsal(id string) (*Rehearsal, error) {
	b, err := os.ReadFile(filepath.Join(d.Path, id+RehearsalExt))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Rehearsal
	if err := json.Unmarshal(b, &r); err != nil || r.ID != id {
		return nil, fmt.Errorf("%s: not the rehearsal record of %s", filepath.Join(d.Path, id+RehearsalExt), id)
	}
	return &r, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

var _ io.Writer = (*lockedBuffer)(nil)
