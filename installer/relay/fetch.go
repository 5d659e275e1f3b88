package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// fetchScript runs on the receiver as root under bash, with the cache
// directory, the seed's address and port, the sha256, the size and the
// transfer's timeout in seconds as arguments, the token as the first line
// of stdin. It connects with bash's /dev/tcp (after a probe bounded by
// timeout), answers the seed's nonce
// with sha256("TOKEN NONCE") (the token never crosses the network),
// receives the file into a temporary file in the cache, checks its size
// and sha256, fsyncs it and renames it to its digest. It prints
// "tricenter-relay fetched SIZE", or "tricenter-relay error KIND MESSAGE"
// and exits 1.
const fetchScript = `set -u
c=$1 a=$2 p=$3 s=$4 z=$5 w=$6
IFS= read -r k || exit 2
` + ssh.ShellSHA256 + `
f() { echo "tricenter-relay error $1 $2"; exit 1; }
umask 077
mkdir -p -m 0700 -- "$c" && chmod 0700 -- "$c" || f local "cannot create the cache directory $c"
t=$(mktemp -- "$c/.$s.fetch.XXXXXX") || f local "cannot create a temporary file in $c"
trap 'rm -f -- "$t"' EXIT
# bash cannot bound a connect: a probe under timeout does (a firewall that
# drops the port would otherwise hold the fetch for minutes).
timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2"' tricenter-relay-probe "$a" "$p" 2>/dev/null ||
  f connect "cannot connect to $a port $p within 10 s (is the port open between the servers?)"
exec 3<>"/dev/tcp/$a/$p" || f connect "cannot connect to $a port $p"
IFS=' ' read -r -t 30 m v n <&3 || f protocol "no greeting from $a port $p"
[ "$m $v" = "tricenter-relay 1" ] && [ ${#n} -eq 32 ] || f protocol "unexpected greeting from $a port $p"
x=$(printf '%s %s' "$k" "$n" | sha256sum) || f local "sha256sum failed"
k=
printf '%s %s\n' "${x%% *}" "$s" >&3 || f connect "the connection to $a port $p broke"
IFS=' ' read -r -t 30 m v g <&3 || f protocol "no answer from $a port $p"
[ "$m" = tricenter-relay ] || f protocol "unexpected answer from $a port $p"
[ "$v" = ok ] || f refused "the seed answered $v"
[ "$g" = "$z" ] || f size "the seed has $g bytes, expected $z"
timeout "$w" cat <&3 > "$t" || f transfer "receiving from $a port $p failed or took longer than $w s"
exec 3<&-
g=$(stat -c %s -- "$t")
[ "$g" = "$z" ] || f size "received $g bytes, expected $z"
sync -- "$t" || f local "fsync failed"
h=$(h256 "$t") || f local "cannot hash $t"
[ "$h" = "$s" ] || f checksum "the received content has sha256:$h"
mv -f -- "$t" "$c/$s" || f local "cannot rename into $c"
sync -- "$c" 2>/dev/null
echo "tricenter-relay fetched $g"
`

// FetchOptions say what to fetch from which seed.
type FetchOptions struct {
	// Name is the receiver's name and Seed the seed's, for messages.
	Name, Seed string
	CacheDir   string // default DefaultCacheDir
	// From is the seed's server (Server.Listen).
	From  netip.AddrPort
	Token string
	// SHA256 and Size are the file's.
	SHA256 string
	Size   int64
	// Timeout bounds the transfer (default 5 minutes plus 10 s per 100
	// MiB).
	Timeout time.Duration
}

// Fetch receives a file from a seed's server into the receiver's cache
// through r (as root), verified against its sha256. It may be retried:
// only a verified file is renamed into the cache. Errors wrap ErrFetch
// (and ErrChecksum when the content did not verify).
func Fetch(ctx context.Context, r Runner, o FetchOptions) error {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if err := CheckCacheDir(o.CacheDir); err != nil {
		return err
	}
	if err := CheckDigest(o.SHA256); err != nil {
		return err
	}
	if !o.From.IsValid() || o.From.Port() == 0 {
		return fmt.Errorf("fetching onto %s: no seed address", o.Name)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5*time.Minute + time.Duration(o.Size/(100<<20)+1)*10*time.Second
	}
	secs := int64((o.Timeout + time.Second - 1) / time.Second)
	args := []string{o.CacheDir, o.From.Addr().String(), strconv.Itoa(int(o.From.Port())), o.SHA256,
		strconv.FormatInt(o.Size, 10), strconv.FormatInt(secs, 10)}
	for i, a := range args {
		args[i] = shell.Quote(a)
	}
	cmd := r.AsRoot("bash -c " + shell.Quote(fetchScript) + " tricenter-relay-fetch " + strings.Join(args, " "))
	// The connect and the greeting are bounded by the host's own
	// timeouts only; the whole fetch by this.
	rctx, cancel := context.WithTimeout(ctx, o.Timeout+time.Minute)
	defer cancel()
	var out bytes.Buffer
	errw := &tailWriter{max: 2048}
	err := r.Run(rctx, cmd, strings.NewReader(o.Token+"\n"), &out, errw)
	what := fmt.Sprintf("fetching sha256:%s… from %s (%s)", o.SHA256[:12], o.Seed, o.From)
	for _, l := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "tricenter-relay error "); ok {
			kind, msg, _ := strings.Cut(rest, " ")
			if kind == "checksum" {
				return fmt.Errorf("%s: %w: %w: %s", what, ErrFetch, ErrChecksum, msg)
			}
			return fmt.Errorf("%s: %w: %s", what, ErrFetch, msg)
		}
		if strings.HasPrefix(l, "tricenter-relay fetched ") && err == nil {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rctx.Err() != nil {
		return fmt.Errorf("%s: %w: no result within %s", what, ErrFetch, o.Timeout+time.Minute)
	}
	if err == nil {
		err = errors.New("the receiver did not confirm")
	}
	if t := errw.String(); t != "" && !strings.Contains(err.Error(), t) {
		return fmt.Errorf("%s: %w: %w: %s", what, ErrFetch, err, t)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrFetch, err)
}
