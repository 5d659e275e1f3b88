package phase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Host is an inventory server with its connection. Its methods are safe
// for concurrent use; every change goes through Mutate.
type Host struct {
	inventory.Host
	// Endpoint is how the host is reached (jump hosts included).
	Endpoint ssh.Endpoint

	m       *Manager
	uploads chan struct{}
	mu      sync.Mutex
	changes []string
	paths   map[string]chan struct{} // one upload at a time per remote path
	snap    hostSnapshot             // a dry run's listing of SnapshotDirs
}

func (m *Manager) newHost(h inventory.Host) *Host {
	return &Host{Host: h, Endpoint: EndpointFor(m.Cluster, h, m.Bastion), m: m,
		uploads: make(chan struct{}, m.UploadsPerHost)}
}

// EndpointFor derives how to reach a server from the inventory: its
// address, user and key, its center's jump host (unless ssh.jumpHost is
// "none"), and the run's bastion in front of everything.
func EndpointFor(c *inventory.Cluster, h inventory.Host, bastion *ssh.Endpoint) ssh.Endpoint {
	agent := func(p *bool) bool { return p != nil && *p }
	ep := ssh.Endpoint{Name: h.Name, Address: h.SSH.Address, Port: h.SSH.Port, User: h.SSH.User,
		KeyFile: h.SSH.KeyFile, Agent: agent(h.SSH.Agent), HostKey: h.SSH.HostKey}
	var jump *ssh.Endpoint
	if bastion == nil && c != nil && c.Spec.SSH.Bastion != nil {
		b := c.Spec.SSH.Bastion
		bastion = &ssh.Endpoint{Name: b.Name, Address: b.Address, Port: b.Port, User: b.User, KeyFile: b.KeyFile,
			Agent: agent(b.Agent), HostKey: b.HostKey}
	}
	if j := h.JumpHost(); j != nil {
		jump = &ssh.Endpoint{Name: j.Name, Address: j.Address, Port: j.Port, User: j.User, KeyFile: j.KeyFile,
			Agent: agent(j.Agent), HostKey: j.HostKey, Jump: bastion}
	} else if bastion != nil && h.SSH.JumpHost != inventory.JumpNone {
		jump = bastion
	}
	ep.Jump = jump
	return ep
}

// String is the host's name.
func (h *Host) String() string { return h.Name }

// DryRun reports whether changes are only recorded.
func (h *Host) DryRun() bool { return h.m.DryRun }

// Logf prints a per-host progress line.
func (h *Host) Logf(format string, args ...any) {
	h.m.Progress.Host(h.Name, fmt.Sprintf(format, args...))
}

// Changes lists the changes made on this host, or in a dry run the ones
// that would be made ("would …").
func (h *Host) Changes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.changes...)
}

// Mutate is the mutation gate: every remote change goes through it. In a
// dry run it records "would ACTION" and returns nil without calling do;
// otherwise it records and logs ACTION, then calls do.
func (h *Host) Mutate(ctx context.Context, action string, do func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h.m.DryRun {
		h.mu.Lock()
		h.changes = append(h.changes, "would "+action)
		h.mu.Unlock()
		h.m.Logger.Info("Would change", "host", h.Name, "action", action)
		h.m.Progress.Host(h.Name, "would "+action)
		return nil
	}
	h.mu.Lock()
	h.changes = append(h.changes, action)
	h.mu.Unlock()
	h.m.Logger.Info("Changing", "host", h.Name, "action", action)
	h.m.Progress.Host(h.Name, action)
	return do(ctx)
}

// Command is a remote command for Run.
type Command struct {
	Cmd  string
	Sudo bool // run as root (sudo -n for other logins)
	// Stdin, Stdout and Stderr are optional.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Describe replaces the command in the change record and logs, e.g.
	// when the command line is long; commands never carry secrets (pass
	// them on Stdin or with WriteFile).
	Describe string
}

// Run runs a command through the gate. It is retried only when the
// connection failed before the command started, so a command never runs
// twice because of a retry.
func (h *Host) Run(ctx context.Context, c Command) error {
	what := c.Describe
	if what == "" {
		what = c.Cmd
	}
	action := "run " + shorten(what, 100)
	if c.Sudo {
		action += " (as root)"
	}
	return h.Mutate(ctx, action, func(ctx context.Context) error {
		return h.run(ctx, c, false)
	})
}

func (h *Host) run(ctx context.Context, c Command, idempotent bool) error {
	return h.m.retry(ctx, h, "running "+shorten(c.Cmd, 60), func(cl *ssh.Client) error {
		cmd := c.Cmd
		if c.Sudo {
			cmd = cl.AsRoot(cmd)
		}
		err := cl.Run(ctx, cmd, c.Stdin, c.Stdout, c.Stderr)
		if err != nil && !idempotent && !errors.Is(err, ssh.ErrNotStarted) && ssh.IsTransient(err) {
			// It may have run: do not retry.
			return ssh.Permanent(fmt.Errorf("%w (not retried: the command may have run)", err))
		}
		return err
	})
}

// Exec runs cmd as the login user through the gate and returns its stdout.
func (h *Host) Exec(ctx context.Context, cmd string) (string, error) {
	var out bytes.Buffer
	err := h.Run(ctx, Command{Cmd: cmd, Stdout: &out})
	return out.String(), err
}

// Sudo runs cmd as root through the gate and returns its stdout.
func (h *Host) Sudo(ctx context.Context, cmd string) (string, error) {
	var out bytes.Buffer
	err := h.Run(ctx, Command{Cmd: cmd, Sudo: true, Stdout: &out})
	return out.String(), err
}

// Query runs a read-only command as root and returns its stdout. It runs
// in dry runs too, and is retried on network errors: it must not change
// anything.
func (h *Host) Query(ctx context.Context, cmd string) (string, error) {
	var out bytes.Buffer
	err := h.run(ctx, Command{Cmd: cmd, Sudo: true, Stdout: &out}, true)
	return out.String(), err
}

// queryWithInput is Query with stdin (given again to each attempt).
func (h *Host) queryWithInput(ctx context.Context, what, cmd, stdin string) (string, error) {
	var out bytes.Buffer
	err := h.m.retry(ctx, h, what, func(cl *ssh.Client) error {
		out.Reset()
		return cl.Run(ctx, cl.AsRoot(cmd), strings.NewReader(stdin), &out, nil)
	})
	return out.String(), err
}

// QueryAsUser is Query as the login user (no sudo).
func (h *Host) QueryAsUser(ctx context.Context, cmd string) (string, error) {
	var out bytes.Buffer
	err := h.run(ctx, Command{Cmd: cmd, Stdout: &out}, true)
	return out.String(), err
}

// Client returns the host's live connection, dialling it if needed. Work
// done directly on it bypasses the mutation gate: use it to inspect, never
// to change.
func (h *Host) Client(ctx context.Context) (*ssh.Client, error) {
	var c *ssh.Client
	err := h.m.retry(ctx, h, "connecting", func(cl *ssh.Client) error {
		c = cl
		return nil
	})
	return c, err
}

// Stat reads a remote file's state (sha256, mode, owner).
func (h *Host) Stat(ctx context.Context, path string) (ssh.FileState, error) {
	var st ssh.FileState
	err := h.m.retry(ctx, h, "reading "+path, func(c *ssh.Client) error {
		var err error
		st, err = c.Stat(ctx, path)
		return err
	})
	return st, err
}

// FileOptions are the mode and owner of an uploaded or written file.
type FileOptions struct {
	Mode  fs.FileMode // default 0644
	Owner string      // "user:group"; empty leaves root (or the login user)
	// DirMode is the mode of missing parent directories the write creates
	// (default 0755, so non-root readers can traverse them).
	DirMode fs.FileMode
	// Secret marks content (passwords, private keys, tokens, kubeconfigs)
	// whose digest must appear nowhere: change records, dry runs and logs
	// say "secret content (N bytes)", FileResult.SHA256 stays empty, and
	// the transfer keeps the digest off the host's command lines and file
	// names (see ssh.PutOptions.Secret). It is still verified and atomic.
	Secret bool
	// SHA256, for UploadFile, is the digest the local file must have (from
	// an artifact manifest): a file that changed since it was checked is
	// refused instead of uploaded, and the host verifies what it receives
	// against this digest.
	SHA256 string
}

// FileResult says what Upload or WriteFile did.
type FileResult struct {
	Changed bool   // content, mode or owner changed (or would, in a dry run)
	SHA256  string // of the content; empty for secret content
	Size    int64
}

// Upload puts a local file at remote with mode: skipped when the remote
// file already has its sha256 (mode fixed if needed; the remote file is
// hashed only when its size matches), otherwise streamed to a temporary
// file, fsynced, checked on the host and renamed atomically — all in one
// SSH session. A partial upload left by a cut connection or a killed run
// is resumed.
func (h *Host) Upload(ctx context.Context, local, remote string, mode fs.FileMode) (FileResult, error) {
	return h.UploadFile(ctx, local, remote, FileOptions{Mode: mode})
}

// ErrLocalChanged is returned when a local file no longer has the digest it
// was checked against (FileOptions.SHA256).
var ErrLocalChanged = errors.New("local file changed since it was checked")

// UploadFile is Upload with an owner, a secret flag or an expected digest.
func (h *Host) UploadFile(ctx context.Context, local, remote string, o FileOptions) (FileResult, error) {
	sum, size, err := h.localFile(local, o)
	if err != nil {
		return FileResult{}, err
	}
	open := func() (io.ReadCloser, error) { return os.Open(local) }
	return h.put(ctx, remote, sum, size, o, open, "upload "+remote+" ("+describeContent(sum, size, o.Secret)+")")
}

// localFile returns a local file's sha256 and size, hashing it once per
// run however many hosts and phases upload it (the manager's checksums),
// and checks it still has the digest o.SHA256 names.
func (h *Host) localFile(local string, o FileOptions) (sum string, size int64, err error) {
	sum, size, err = h.m.sums.get(local)
	if err != nil {
		return "", 0, fmt.Errorf("uploading %s: %w", local, err)
	}
	if want := strings.ToLower(o.SHA256); want != "" && sum != want {
		if o.Secret {
			return "", 0, fmt.Errorf("uploading %s: %w: check the file and rerun", local, ErrLocalChanged)
		}
		return "", 0, fmt.Errorf("uploading %s: %w: it has sha256 %s now, %s when it was checked against its manifest; it changed since: check the artifact directory and rerun",
			local, ErrLocalChanged, sum, want)
	}
	return sum, size, nil
}

// WriteFile writes data to path atomically, skipping an identical file.
func (h *Host) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) (FileResult, error) {
	return h.WriteFileOpts(ctx, path, data, FileOptions{Mode: mode})
}

// WriteSecret writes secret content (a password, private key, token or
// kubeconfig) to path atomically, skipping an identical file, without its
// digest appearing anywhere (FileOptions.Secret).
func (h *Host) WriteSecret(ctx context.Context, path string, data []byte, mode fs.FileMode) (FileResult, error) {
	return h.WriteFileOpts(ctx, path, data, FileOptions{Mode: mode, Secret: true})
}

// WriteFileOpts is WriteFile with an owner.
func (h *Host) WriteFileOpts(ctx context.Context, path string, data []byte, o FileOptions) (FileResult, error) {
	sum := fsutil.SHA256Hex(data)
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	size := int64(len(data))
	return h.put(ctx, path, sum, size, o, open, "write "+path+" ("+describeContent(sum, size, o.Secret)+")")
}

// describeContent is how change records and logs name the content: its
// size and digest prefix, or only its size when it is secret.
func describeContent(sum string, size int64, secret bool) string {
	if secret {
		return fmt.Sprintf("secret content, %d bytes", size)
	}
	return fmt.Sprintf("%s, sha256:%s…", progress.Bytes(size), sum[:12])
}

// put checks, transfers, verifies and installs one file in a single
// session per attempt (ssh.Client.OpenPut): an identical file is left
// alone (or only its mode and owner fixed), a different one is sent
// through the mutation gate, resuming a partial upload an interrupted
// attempt or run left.
func (h *Host) put(ctx context.Context, remote, sum string, size int64, o FileOptions, open func() (io.ReadCloser, error), desc string) (FileResult, error) {
	if o.Mode == 0 {
		o.Mode = 0o644
	}
	res := FileResult{SHA256: sum, Size: size}
	if o.Secret {
		res.SHA256 = ""
	}
	if st, ok := h.snapState(ctx, remote); ok {
		return h.putFromSnapshot(ctx, st, remote, sum, o, res, desc)
	}
	// Uploads of one path take turns: they would share the partial file.
	done, terr := h.pathTurn(ctx, remote)
	if terr != nil {
		return res, terr
	}
	defer done()
	if err := acquire(ctx, h.uploads); err != nil {
		return res, err
	}
	defer func() { <-h.uploads }()
	// An action is recorded once, however many attempts it takes.
	recorded := map[string]bool{}
	gate := func(ctx context.Context, action string, do func(ctx context.Context) error) error {
		if recorded[action] {
			return do(ctx)
		}
		recorded[action] = true
		return h.Mutate(ctx, action, do)
	}
	err := h.m.retry(ctx, h, "uploading "+remote, func(c *ssh.Client) error {
		var sent atomic.Int64
		u, err := c.OpenPut(ctx, remote, ssh.PutOptions{SHA256: sum, Size: size, Mode: o.Mode, Owner: o.Owner,
			DirMode: o.DirMode, Secret: o.Secret,
			Progress: func(n int64) { sent.Add(n); h.m.Progress.UploadBytes(n) }})
		if err != nil {
			return err
		}
		defer u.Close()
		st := u.State()
		if st.Exists && st.SHA256 == sum {
			fix := fixes(st, remote, o)
			if len(fix) == 0 {
				h.m.Logger.Debug("Unchanged", "host", h.Name, "path", remote)
				return nil
			}
			res.Changed = true
			return gate(ctx, "set "+strings.Join(fix, "; "), u.Fix)
		}
		res.Changed = true
		return gate(ctx, desc, func(ctx context.Context) error {
			if err := acquire(ctx, h.m.uploads); err != nil {
				return err
			}
			defer func() { <-h.m.uploads }()
			r, err := open()
			if err != nil {
				return err
			}
			defer r.Close()
			h.m.Progress.UploadStart(h.Name, remote, size)
			if off := u.Resume(); off > 0 {
				h.Logf("resuming the upload of %s at %s", remote, progress.Bytes(off))
			}
			err = u.Send(ctx, r)
			if err != nil {
				h.m.Progress.UploadBytes(-sent.Load()) // a retry starts again from what the host kept
			}
			h.m.Progress.UploadDone(h.Name, remote, err)
			return err
		})
	})
	return res, err
}

// fixes are the commands that give an identical file at remote the mode
// and owner o asks for (none when it has them).
func fixes(st ssh.FileState, remote string, o FileOptions) []string {
	var fix []string
	if st.Mode.Perm() != o.Mode.Perm() {
		fix = append(fix, fmt.Sprintf("chmod %o %s", o.Mode.Perm(), shell.Quote(remote)))
	}
	if o.Owner != "" && st.Owner != o.Owner {
		fix = append(fix, fmt.Sprintf("chown %s %s", shell.Quote(o.Owner), shell.Quote(remote)))
	}
	return fix
}

// Systemctl runs systemctl with args as root through the gate.
func (h *Host) Systemctl(ctx context.Context, args ...string) error {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shell.Quote(a)
	}
	cmd := "systemctl " + strings.Join(q, " ")
	return h.Mutate(ctx, cmd, func(ctx context.Context) error {
		return h.run(ctx, Command{Cmd: cmd, Sudo: true}, true)
	})
}

// SystemctlRestart restarts a unit (through the gate: "would restart U").
func (h *Host) SystemctlRestart(ctx context.Context, unit string) error {
	return h.Mutate(ctx, "restart "+unit, func(ctx context.Context) error {
		return h.run(ctx, Command{Cmd: "systemctl restart " + shell.Quote(unit), Sudo: true}, true)
	})
}

// SystemctlDaemonReload reloads systemd's units.
func (h *Host) SystemctlDaemonReload(ctx context.Context) error {
	return h.Mutate(ctx, "reload systemd units", func(ctx context.Context) error {
		return h.run(ctx, Command{Cmd: "systemctl daemon-reload", Sudo: true}, true)
	})
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
