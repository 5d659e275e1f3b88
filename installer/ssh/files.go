package ssh

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// FileState is what a remote path holds.
type FileState struct {
	Exists bool
	SHA256 string // hex; from OpenPut only when the size is the expected one
	Mode   fs.FileMode
	Owner  string // user:group
	Size   int64
}

// ShellSHA256 defines the shell function h256 FILE, which prints the
// sha256 of a file in hex: openssl where present (it uses the CPU's SHA
// extensions, several times faster than coreutils' sha256sum), sha256sum
// otherwise; it fails (status 1) when neither can read the file.
const ShellSHA256 = `h256() { x=$(openssl dgst -sha256 -r "$1" 2>/dev/null) && x=${x%% *} && [ ${#x} -eq 64 ] || ` +
	`{ x=$(sha256sum -- "$1") && x=${x%% *}; } || return 1; echo "$x"; }; `

// Stat reads the state of a regular file on the host, as root (so root-only
// files can be checksummed). A path that exists but is not a regular file
// is an error.
func (c *Client) Stat(ctx context.Context, p string) (FileState, error) {
	script := ShellSHA256 + `if [ -f "$1" ]; then stat -L -c '%a %U:%G %s' -- "$1" && h256 "$1"; ` +
		`elif [ -e "$1" ]; then echo notfile; else echo absent; fi`
	out, err := c.Output(ctx, c.AsRoot("sh -c "+shell.Quote(script)+" tricenter-stat "+shell.Quote(p)))
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
		return FileState{}, notFileError(p)
	case len(lines) != 2:
		return FileState{}, fmt.Errorf("reading %s: unexpected output %q", p, shorten(out, 120))
	}
	st, err := parseFileLine(p, strings.Fields(lines[0]))
	if err != nil {
		return FileState{}, err
	}
	if st.SHA256 = strings.TrimSpace(lines[1]); len(st.SHA256) != 64 {
		return FileState{}, fmt.Errorf("reading %s: unexpected output %q", p, shorten(out, 120))
	}
	return st, nil
}

func notFileError(p string) error {
	return fmt.Errorf("%s exists and is not a regular file: remove it or choose another path", p)
}

// parseFileLine parses "MODE USER:GROUP SIZE" (stat -c '%a %U:%G %s').
func parseFileLine(p string, f []string) (FileState, error) {
	if len(f) != 3 {
		return FileState{}, fmt.Errorf("reading %s: unexpected stat output %q", p, strings.Join(f, " "))
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil {
		return FileState{}, fmt.Errorf("reading %s: mode %q: %w", p, f[0], err)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return FileState{}, fmt.Errorf("reading %s: size %q: %w", p, f[2], err)
	}
	return FileState{Exists: true, Mode: fs.FileMode(mode), Owner: f[1], Size: size}, nil
}

// PutOptions describe the file Put writes.
type PutOptions struct {
	SHA256 string      // hex sha256 of the content; required, checked on the host
	Size   int64       // bytes; 0 means unknown (no early size check, no resume)
	Mode   fs.FileMode // default 0644
	Owner  string      // "user:group"; empty keeps root
	// DirMode is the mode of the directories the upload creates (missing
	// parents of the target); default 0755, so a non-root reader can
	// traverse them. Existing directories are left alone.
	DirMode fs.FileMode
	// Secret content (passwords, private keys, tokens, kubeconfigs) leaves
	// no digest anywhere outside this process: the sha256 goes to the host
	// on the session's stdin instead of its command line (which sudo logs
	// and ps shows), the temporary file has a random name instead of one
	// derived from the digest (so a secret upload is never resumed), the
	// host answers "same" or "differs" instead of printing the target's
	// digest, and a mismatch error names no digest.
	//
	// Why compare on the host with the digest on stdin, rather than read
	// the target back or use a keyed HMAC: the host already holds the
	// content, so what must not happen is the digest being recorded where
	// others read it (argv in ps and /proc, sudo's auth.log, file names,
	// logs). The stdin of the root shell and its variables are recorded
	// nowhere, and the comparison is the shell's [ builtin, so neither
	// digest becomes a process argument. Reading the target back would
	// send every unchanged secret over the network again on every run; an
	// HMAC would need a keyed hash on the host, and openssl dgst -hmac
	// takes its key in argv.
	Secret   bool
	Progress func(n int64)
}

// putScript is the host side of an upload, in one session. It runs as
// root (through sudo -n for other logins) with the parameters as
// arguments: target, its directory, the temporary file, sha256 (or - for
// secret content: then the sha256 is the first line of stdin), size (or
// -), mode, owner (or empty), target base name, umask for the
// directories it creates.
//
// It reports the target's state (hashing it only when its size is the
// expected one; for secret content only whether it matches, "=" or "!")
// and the size of a partial upload of the same content left by an
// interrupted run, then waits for one line on stdin: "skip", "fix" (set
// mode and owner), or "send OFFSET" followed by the content from OFFSET
// on. The content goes to the temporary file (mode 0600, created
// exclusively, or appended to when resuming), which is fsynced, checked
// for size and sha256 on the host, given its mode and owner and renamed
// over the target; the directory is fsynced and temporaries of earlier
// uploads are removed. A reader of the target sees the old file or the new
// one, never a partial one. Exit 97: checksum mismatch; 96: the resumed
// partial file did not verify and was removed; 95: short content.
//
// The digests are compared with the shell's [ builtin, so neither the
// expected nor the computed one is ever a process argument.
const putScript = `set -e; umask 077; f=$1 d=$2 t=$3 s=$4 z=$5 m=$6 o=$7 b=$8 u=$9 k=; ` + ShellSHA256 +
	`if [ "$s" = - ]; then k=1; read -r s || exit 2; fi; ` +
	`if [ -f "$f" ]; then set -- $(stat -L -c '%a %U:%G %s' -- "$f"); h=-; ` +
	`if [ "$z" = - ] || [ "$3" = "$z" ]; then h=$(h256 "$f"); if [ -n "$k" ]; then if [ "$h" = "$s" ]; then h==; else h=!; fi; fi; fi; ` +
	`echo "tricenter-put file $1 $2 $3 $h"; ` +
	`elif [ -e "$f" ]; then echo "tricenter-put notfile"; echo "tricenter-put ready"; exit 0; else echo "tricenter-put absent"; fi; ` +
	`p=0; if [ "$z" != - ] && [ -f "$t" ] && [ ! -L "$t" ] && [ -O "$t" ]; then p=$(stat -c %s -- "$t"); fi; ` +
	`echo "tricenter-put part $p"; echo "tricenter-put ready"; ` +
	`read -r c n || exit 0; ` +
	`case $c in skip) exit 0;; fix) chmod -- "$m" "$f"; [ -z "$o" ] || chown -- "$o" "$f"; exit 0;; send) ;; *) exit 2;; esac; ` +
	`(umask "$u"; mkdir -p -- "$d"); ` +
	`if [ "$n" -gt 0 ]; then { [ -f "$t" ] && [ ! -L "$t" ] && [ -O "$t" ] && [ "$(stat -c %s -- "$t")" = "$n" ]; } || ` +
	`{ rm -f -- "$t"; echo "the partial upload changed" >&2; exit 96; }; ` +
	`else rm -f -- "$t"; (set -C; : > "$t"); fi; ` +
	`cat >> "$t"; ` +
	`if [ "$z" != - ]; then g=$(stat -c %s -- "$t"); if [ "$g" != "$z" ]; then [ "$g" -lt "$z" ] || rm -f -- "$t"; ` +
	`echo "got $g bytes, expected $z" >&2; exit 95; fi; fi; ` +
	`sync -- "$t"; h=$(h256 "$t"); ` +
	`if [ "$h" != "$s" ]; then rm -f -- "$t"; [ -n "$k" ] || echo "sha256:$h" >&2; [ "$n" -gt 0 ] && exit 96; exit 97; fi; ` +
	`chmod -- "$m" "$t"; [ -z "$o" ] || chown -- "$o" "$t"; mv -f -- "$t" "$f"; sync -- "$d"; ` +
	`rm -f -- "$d/.$b.tricenter-"*`

// Exit statuses of putScript.
const (
	putChecksum = 97
	putResume   = 96
	putShort    = 95
)

// errPartialDiscarded: a resumed upload did not verify; the host removed
// the partial file, so a retry starts from the beginning.
var errPartialDiscarded = errors.New("the partial upload on the host did not verify and was removed")

// PutSession is one upload in one SSH session: OpenPut reads the target's
// state, then exactly one of Close (leave it), Fix (set mode and owner) or
// Send (transfer) ends it. Not safe for concurrent use.
type PutSession struct {
	c     *Client
	dst   string
	o     PutOptions
	cmd   string
	sess  *xssh.Session
	stdin io.WriteCloser
	tail  *tailBuffer
	done  chan error
	state FileState
	part  int64
	ended bool
	err   error // the session's result once ended
}

// OpenPut starts the upload of dst in a new session and reads what the
// host has: State is the target (its SHA256 is set only when its size is
// o.Size, so an obviously different file is never hashed), Resume the
// bytes of a partial upload of the same content that Send continues.
func (c *Client) OpenPut(ctx context.Context, dst string, o PutOptions) (*PutSession, error) {
	if len(o.SHA256) != 64 {
		return nil, fmt.Errorf("uploading %s: the sha256 of the content is required", dst)
	}
	if !path.IsAbs(dst) || path.Clean(dst) != dst || dst == "/" {
		return nil, fmt.Errorf("uploading %s: the target path must be absolute and clean", dst)
	}
	if o.Mode == 0 {
		o.Mode = 0o644
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.DirMode == 0 {
		o.DirMode = 0o755
	}
	dir, base := path.Dir(dst), path.Base(dst)
	// The temporary file of ordinary content is named after its digest, so
	// an interrupted upload of the same content is found and resumed; that
	// of secret content has a random name.
	tag, digest := o.SHA256[:16], strings.ToLower(o.SHA256)
	if o.Secret {
		var rnd [8]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, fmt.Errorf("uploading %s: %w", dst, err)
		}
		tag, digest = hex.EncodeToString(rnd[:]), "-"
	}
	tmp := path.Join(dir, "."+base+".tricenter-"+tag+".part")
	size := "-"
	if o.Size > 0 {
		size = strconv.FormatInt(o.Size, 10)
	}
	args := []string{dst, dir, tmp, digest, size, fmt.Sprintf("%o", o.Mode.Perm()), o.Owner, base,
		fmt.Sprintf("%03o", 0o777&^o.DirMode.Perm())}
	for i, a := range args {
		args[i] = shell.Quote(a)
	}
	cmd := c.AsRoot("sh -c " + shell.Quote(putScript) + " tricenter-put " + strings.Join(args, " "))
	u := &PutSession{c: c, dst: dst, o: o, cmd: cmd, tail: &tailBuffer{max: 2048}, done: make(chan error, 1)}
	var err error
	if u.sess, err = c.newSession(); err != nil {
		return nil, fmt.Errorf("uploading %s: %w", dst, c.lost(err))
	}
	u.sess.Stderr = u.tail
	stdout, err := u.sess.StdoutPipe()
	if err == nil {
		u.stdin, err = u.sess.StdinPipe()
	}
	if err == nil {
		err = u.sess.Start(cmd)
	}
	if err == nil && o.Secret {
		_, err = io.WriteString(u.stdin, strings.ToLower(o.SHA256)+"\n")
	}
	if err != nil {
		u.sess.Close()
		return nil, fmt.Errorf("uploading %s: %w", dst, c.lost(err))
	}
	// Lines before the report (a login script that prints) are skipped;
	// what follows it is drained so the session never stalls on stdout.
	report := make(chan error, 1)
	go func() {
		report <- u.readReport(bufio.NewReader(stdout))
		_, _ = io.Copy(io.Discard, stdout)
		u.done <- u.sess.Wait()
	}()
	var rerr error
	select {
	case rerr = <-report:
	case <-ctx.Done():
		u.kill()
		return nil, ctx.Err()
	}
	if rerr != nil {
		u.stdin.Close()
		err := u.finish(ctx)
		if err == nil {
			err = rerr
		}
		return nil, fmt.Errorf("uploading %s: %w", dst, err)
	}
	if !u.state.Exists && u.state.Mode == fs.ModeIrregular {
		_ = u.Close()
		return nil, notFileError(dst)
	}
	return u, nil
}

func (u *PutSession) readReport(r *bufio.Reader) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("the host ended the upload before reporting the target's state: %w", io.ErrUnexpectedEOF)
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "tricenter-put" {
			continue
		}
		switch f[1] {
		case "ready":
			return nil
		case "absent":
		case "notfile":
			u.state.Mode = fs.ModeIrregular
		case "part":
			if len(f) == 3 {
				u.part, _ = strconv.ParseInt(f[2], 10, 64)
			}
		case "file":
			if len(f) != 6 {
				return fmt.Errorf("unexpected report %q", strings.TrimSpace(line))
			}
			st, err := parseFileLine(u.dst, f[2:5])
			if err != nil {
				return err
			}
			switch f[5] {
			case "-", "!":
			case "=": // secret content: the host only says it matches
				st.SHA256 = strings.ToLower(u.o.SHA256)
			default:
				st.SHA256 = f[5]
			}
			u.state = st
		}
	}
}

// State is the target's state on the host.
func (u *PutSession) State() FileState { return u.state }

// Resume is how many bytes of this content an interrupted upload left on
// the host; Send starts there.
func (u *PutSession) Resume() int64 {
	if u.o.Secret || u.o.Size <= 0 || u.part <= 0 || u.part > u.o.Size {
		return 0
	}
	return u.part
}

// Close ends the session without changing anything (when Fix or Send did
// not already end it).
func (u *PutSession) Close() error {
	if u.ended {
		return nil
	}
	u.stdin.Close()
	select {
	case err := <-u.done:
		u.ended, u.err = true, err
		u.sess.Close()
		return nil
	case <-time.After(10 * time.Second):
		u.kill()
		return nil
	}
}

// Fix sets the target's mode and owner (its content is already right).
func (u *PutSession) Fix(ctx context.Context) error {
	if u.ended {
		return errors.New("upload session already ended")
	}
	if _, err := io.WriteString(u.stdin, "fix\n"); err != nil {
		u.kill()
		return fmt.Errorf("setting mode of %s: %w", u.dst, u.c.lost(err))
	}
	u.stdin.Close()
	if err := u.finish(ctx); err != nil {
		return fmt.Errorf("setting mode of %s: %w", u.dst, err)
	}
	return nil
}

// Send streams r (the whole content, from its start) to the host, from
// Resume on: r is seeked there when it is an io.Seeker, read and dropped
// otherwise. A resumed upload whose result does not verify is restarted
// from the beginning in a new session when r can seek; otherwise the
// error is transient and a retry starts over.
func (u *PutSession) Send(ctx context.Context, r io.Reader) error {
	if u.ended {
		return errors.New("upload session already ended")
	}
	reported, err := u.send(ctx, r, u.Resume())
	if errors.Is(err, errPartialDiscarded) {
		if sk, ok := r.(io.Seeker); ok {
			u.c.logger.Warn("Restarting a resumed upload from the beginning", "host", u.c.ep.name(), "path", u.dst)
			if u.o.Progress != nil {
				u.o.Progress(-reported)
			}
			if _, serr := sk.Seek(0, io.SeekStart); serr != nil {
				return fmt.Errorf("uploading %s: rewinding the source: %w", u.dst, serr)
			}
			again, oerr := u.c.OpenPut(ctx, u.dst, u.o)
			if oerr != nil {
				return oerr
			}
			defer again.Close()
			_, err = again.send(ctx, r, 0)
			return err
		}
	}
	return err
}

// send streams r from off and returns how many bytes it reported to
// Progress.
func (u *PutSession) send(ctx context.Context, r io.Reader, off int64) (reported int64, _ error) {
	if off > 0 {
		var err error
		if sk, ok := r.(io.Seeker); ok {
			_, err = sk.Seek(off, io.SeekStart)
		} else {
			_, err = io.CopyN(io.Discard, r, off)
		}
		if err != nil {
			u.kill()
			return reported, fmt.Errorf("uploading %s: skipping the %d bytes already on the host: %w", u.dst, off, err)
		}
		u.c.logger.Debug("Resuming upload", "host", u.c.ep.name(), "path", u.dst, "offset", off)
		if u.o.Progress != nil {
			u.o.Progress(off)
		}
		reported = off
	}
	if _, err := fmt.Fprintf(u.stdin, "send %d\n", off); err != nil {
		u.kill()
		return reported, fmt.Errorf("uploading %s: %w", u.dst, u.c.lost(err))
	}
	cr := &countingReader{ctx: ctx, r: r, progress: u.o.Progress}
	_, err := io.CopyBuffer(u.stdin, cr, make([]byte, 256<<10))
	reported += cr.n
	if err != nil {
		if ctx.Err() != nil {
			u.kill()
			return reported, ctx.Err()
		}
		if cr.err != nil {
			u.kill()
			return reported, fmt.Errorf("uploading %s: reading the source: %w", u.dst, cr.err)
		}
		// The host may have refused the content (its exit status says
		// why) or the connection broke.
		select {
		case werr := <-u.done:
			u.ended = true
			u.sess.Close()
			if ee := u.exitError(werr); ee != nil {
				return reported, u.result(off, ee)
			}
		case <-time.After(5 * time.Second):
			u.kill()
		}
		return reported, fmt.Errorf("uploading %s: %w", u.dst, u.c.lost(err))
	}
	if u.o.Size > 0 && off+cr.n != u.o.Size {
		u.kill()
		return reported, fmt.Errorf("uploading %s: the source gave %d bytes, expected %d", u.dst, off+cr.n, u.o.Size)
	}
	u.stdin.Close()
	return reported, u.result(off, u.finish(ctx))
}

// result describes the upload script's outcome.
func (u *PutSession) result(off int64, err error) error {
	var ee *ExitError
	if errors.As(err, &ee) {
		switch ee.Status {
		case putChecksum:
			if u.o.Secret {
				return fmt.Errorf("uploading %s: %w: the host received other content than was sent (secret content: digests not shown); retry, and check the host's disk and memory if it persists",
					u.dst, ErrChecksumMismatch)
			}
			return fmt.Errorf("uploading %s: %w: expected sha256:%s, the host computed %s", u.dst, ErrChecksumMismatch, u.o.SHA256, ee.Stderr)
		case putResume:
			return fmt.Errorf("uploading %s (resumed at %d bytes): %w: %s", u.dst, off, errPartialDiscarded, ee.Stderr)
		case putShort:
			return fmt.Errorf("uploading %s: the host received a short file: %s", u.dst, ee.Stderr)
		}
	}
	if err != nil {
		return fmt.Errorf("installing %s: %w", u.dst, err)
	}
	return nil
}

// finish waits for the session's end and classifies its result.
func (u *PutSession) finish(ctx context.Context) error {
	var err error
	select {
	case err = <-u.done:
	case <-ctx.Done():
		u.kill()
		return ctx.Err()
	}
	u.ended, u.err = true, err
	u.sess.Close()
	return u.exitError(err)
}

// exitError classifies the session's result (see Client.exitError); an
// *ExitError names the upload rather than its script.
func (u *PutSession) exitError(err error) error {
	err = u.c.exitError(u.cmd, err, u.tail)
	var ee *ExitError
	if errors.As(err, &ee) {
		ee.Cmd = "tricenter-put " + u.dst
		return err
	}
	return err
}

// kill ends the session and the upload's processes on the host, as Run
// ends a cancelled command (a partial temporary file stays for a later
// resume).
func (u *PutSession) kill() {
	if u.ended {
		return
	}
	u.ended = true
	if id, _ := runID(u.cmd); id == "" || !u.c.terminate(id, "tricenter-put "+u.dst) {
		_ = u.sess.Signal(xssh.SIGKILL)
	}
	u.sess.Close()
}

// Put uploads r to dst unconditionally (see OpenPut and Send): r goes to
// a temporary file in dst's directory, which is fsynced, checked against
// o.SHA256 on the host, given its mode and owner and renamed over dst; a
// reader of dst sees the old file or the new one, never a partial one. A
// partial upload of the same content left by an interrupted earlier Put is
// resumed; temporaries of earlier uploads of dst are removed. Logins other
// than root finish with `sudo -n`.
func (c *Client) Put(ctx context.Context, r io.Reader, dst string, o PutOptions) error {
	u, err := c.OpenPut(ctx, dst, o)
	if err != nil {
		return err
	}
	defer u.Close()
	return u.Send(ctx, r)
}

// countingReader reports progress and stops on cancellation. It hides
// the source's WriterTo so copies go through the caller's buffer.
type countingReader struct {
	ctx      context.Context
	r        io.Reader
	n        int64
	err      error // the source's own error, if any
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
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
