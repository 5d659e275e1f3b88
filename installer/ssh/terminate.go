package ssh

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// Ending a cancelled root command on the host.
//
// Every command AsRoot builds starts with `export TRICENTER_RUN=<id>`: a
// random run id (16 bytes in hex, not a secret) that every process the
// command starts inherits in its environment, whatever process group or
// session it moves to. sshd already runs each session in a session and
// process group of its own (setsid for sessions without a terminal) and
// sudo keeps its command in that group; what kept a cancelled command
// alive was privilege: sshd delivers the client's "signal" request
// (OpenSSH ≥ 7.9) with killpg as the login user, which cannot signal
// the root processes under sudo, and closing the session signals nothing
// (no terminal, no hangup).
//
// So on cancellation the client opens a second session on the same
// connection and runs terminateScript as root (sudo -n, or the root
// login), which finds the processes whose environment holds the run id
// (/proc/PID/environ, root-readable only), sends TERM to each of their
// process groups, waits up to the grace (Options.TerminateGrace) for the
// marked processes to go, then sends KILL to the groups of those left and
// of any marked process that appeared meanwhile. The script takes the run id
// and the grace as arguments: nothing secret is on its command line, and
// it prints only counts.
//
// Not covered: a process that both leaves the groups and clears its
// environment (a daemon started with `env -i setsid`); a connection that
// is already down (nothing reaches the host: Run returns after a 2 s
// liveness probe and the command ends only when it ends, as before); a
// connection whose sessions are all taken (sshd's MaxSessions, default
// 10; a session whose command still runs keeps its slot even once
// closed). In the last two cases Run falls back to what it did before:
// SIGKILL through the session.

// DefaultTerminateGrace is how long a cancelled root command's processes
// get between TERM and KILL.
const DefaultTerminateGrace = 5 * time.Second

// runVar marks the processes of one root command (see above).
const runVar = "TRICENTER_RUN"

// runMark starts every command line AsRoot builds, after the sudo prefix.
const runMark = "export " + runVar + "="

// runIDLen is the run id's length: 16 random bytes in hex.
const runIDLen = 32

// terminateSlack bounds what ending a command takes besides the grace: a
// session, sudo, the scan of /proc.
const terminateSlack = 5 * time.Second

// terminateScript ends the processes of run id $1: TERM to their process
// groups, up to $2 tenths of a second for every marked process to go,
// then KILL to the groups of those left (and of any that appeared
// meanwhile), and up to 2 s more for those to be gone (a signal is
// delivered when its process next runs, which on a loaded host may be a
// while). A zombie has an empty environment: it counts as gone. It
// prints "tricenter-terminate GROUPS LEFT": the process groups it found
// and how many got KILL. When it finds nothing it looks once more after
// 0.2 s: a command cancelled right after it was sent may not have started
// yet.
const terminateScript = `t=$1 w=$2
groups() {
  for f in $(grep -lzx "` + runVar + `=$t" /proc/[0-9]*/environ 2>/dev/null); do
    s=$(cat "${f%/environ}/stat" 2>/dev/null) || continue
    s=${s##*) }
    set -- $s
    [ "${3:-0}" -gt 1 ] && echo "$3"
  done | sort -un
}
g=$(groups)
[ -n "$g" ] || { sleep 0.2; g=$(groups); }
[ -n "$g" ] || { echo "tricenter-terminate 0 0"; exit 0; }
for p in $g; do kill -TERM -$p 2>/dev/null; done
i=0 k=$g
while [ -n "$k" ] && [ $i -lt $w ]; do sleep 0.1; i=$((i+1)); k=$(groups); done
for p in $k; do kill -KILL -$p 2>/dev/null; done
i=0
while [ -n "$k" ] && [ $i -lt 20 ] && [ -n "$(groups)" ]; do sleep 0.1; i=$((i+1)); done
set -- $g; n=$#
set -- $k; echo "tricenter-terminate $n $#"
`

// newRunID is a fresh run id.
func newRunID() string {
	var b [runIDLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// runID returns the run id of a command line AsRoot built ("" for any
// other) and the line as it was before the mark (for messages).
func runID(cmd string) (id, display string) {
	pre := ""
	rest := cmd
	if r, ok := strings.CutPrefix(cmd, sudoPrefix+"sh -c '"); ok {
		pre, rest = sudoPrefix+"sh -c '", r
	}
	r, ok := strings.CutPrefix(rest, runMark)
	if !ok || len(r) < runIDLen+2 || r[runIDLen:runIDLen+2] != "; " {
		return "", cmd
	}
	id = r[:runIDLen]
	if _, err := hex.DecodeString(id); err != nil {
		return "", cmd
	}
	return id, pre + r[runIDLen+2:]
}

// rootLine wraps cmd to run as root without a run id: the line
// terminateScript itself runs with.
func (c *Client) rootLine(cmd string) string {
	if c.ep.user() == "root" {
		return cmd
	}
	return sudoPrefix + "sh -c " + shell.Quote(cmd)
}

// terminate ends the processes of run id on the host (see above) and
// reports whether it could; what names the command in logs. It returns
// within the grace and terminateSlack, whatever the connection does.
func (c *Client) terminate(id, what string) bool {
	log := c.logger.With("host", c.ep.name(), "command", shorten(what, 80))
	if !c.Alive() || !c.ping(2*time.Second) {
		// Nothing reaches the host (it may be down): not worth a warning.
		log.Debug("Cannot end a cancelled command on the host: the connection is down")
		return false
	}
	grace := c.grace
	if grace <= 0 {
		grace = DefaultTerminateGrace
	}
	tenths := int((grace + 99*time.Millisecond) / (100 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), grace+terminateSlack)
	defer cancel()
	line := c.rootLine("sh -c " + shell.Quote(terminateScript) + " tricenter-terminate " + id + " " + strconv.Itoa(tenths))
	log.Debug("Ending a cancelled command on the host", "grace", grace)
	var out bytes.Buffer
	res := make(chan error, 1)
	// A session open on a connection that stopped answering does not
	// heed ctx: wait for it here instead.
	go func() { res <- c.Run(ctx, line, nil, &out, nil) }()
	var err error
	select {
	case err = <-res:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		var groups, killed int
		if _, serr := fmt.Sscanf(strings.TrimSpace(out.String()), "tricenter-terminate %d %d", &groups, &killed); serr != nil {
			err = errors.New("unexpected output of the termination script: " + shorten(out.String(), 80))
		} else {
			log.Debug("Ended a cancelled command on the host", "process_groups", groups, "killed_after_grace", killed)
			return true
		}
	}
	log.Warn("Could not end a cancelled command on the host", "err", err)
	return false
}
