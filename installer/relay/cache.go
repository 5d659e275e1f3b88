package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// queryScript reports, read only, the cache directory's mode and owner
// ("tricenter-cache dir MODE OWNER") and, for each "SHA256 SIZE" pair of
// its arguments, "tricenter-cache has SHA256" when a file of that size is
// there. Sizes only: Install and Fetch hash what they use.
const queryScript = `c=$1; shift
[ -d "$c" ] && [ ! -L "$c" ] && echo "tricenter-cache dir $(stat -c '%a %U' -- "$c")"
while [ $# -ge 2 ]; do
  if [ -f "$c/$1" ] && [ ! -L "$c/$1" ] && [ "$(stat -c %s -- "$c/$1")" = "$2" ]; then echo "tricenter-cache has $1"; fi
  shift 2
done
true
`

// CacheState is what Query found.
type CacheState struct {
	// DirOK: the directory exists, mode 0700, owned by root.
	DirOK bool
	// Has are the digests with a file of the expected size.
	Has map[string]bool
}

// Query reads the cache's state through r (as root): the directory and,
// for each digest in files (sha256 → size), whether a file of that size is
// there. It changes nothing.
func Query(ctx context.Context, r Runner, dir string, files map[string]int64) (CacheState, error) {
	st := CacheState{Has: map[string]bool{}}
	if err := CheckCacheDir(dir); err != nil {
		return st, err
	}
	args := []string{shell.Quote(dir)}
	for sum, size := range files {
		if err := CheckDigest(sum); err != nil {
			return st, err
		}
		args = append(args, sum, strconv.FormatInt(size, 10))
	}
	var out bytes.Buffer
	err := r.Run(ctx, r.AsRoot("sh -c "+shell.Quote(queryScript)+" tricenter-cache-query "+strings.Join(args, " ")), nil, &out, nil)
	if err != nil {
		return st, fmt.Errorf("reading the cache %s: %w", dir, err)
	}
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "tricenter-cache" && f[1] == "dir":
			st.DirOK = f[2] == "700" && f[3] == "root"
		case len(f) == 3 && f[0] == "tricenter-cache" && f[1] == "has":
			if _, ok := files[f[2]]; ok {
				st.Has[f[2]] = true
			}
		}
	}
	return st, nil
}

// prepareScript creates the cache directory: missing parents 0755, the
// directory itself 0700 and owned by root.
const prepareScript = `set -e; c=$1
[ ! -L "$c" ] || { echo "$c is a symbolic link" >&2; exit 1; }
(umask 022; mkdir -p -- "${c%/*}")
mkdir -p -m 0700 -- "$c"; chown root:root -- "$c"; chmod 0700 -- "$c"
`

// PrepareDir creates the cache directory (see Query's DirOK) through r.
func PrepareDir(ctx context.Context, r Runner, dir string) error {
	if err := CheckCacheDir(dir); err != nil {
		return err
	}
	if err := r.Run(ctx, r.AsRoot("sh -c "+shell.Quote(prepareScript)+" tricenter-cache-prepare "+shell.Quote(dir)), nil, nil, nil); err != nil {
		return fmt.Errorf("creating the cache %s: %w", dir, err)
	}
	return nil
}

// installScript copies a cache file next to the target, checks the copy's
// sha256 (so a cache file is never trusted without hashing it), gives it
// its mode and owner and renames it over the target. It prints
// "tricenter-cache installed", "tricenter-cache absent", or
// "tricenter-cache corrupt SHA256" after removing a cache file that does
// not hash to its name. Arguments: cache file, target, its directory, its
// base name, mode, owner (or empty), sha256, umask for new directories.
const installScript = `set -u; c=$1 f=$2 d=$3 b=$4 m=$5 o=$6 s=$7 u=$8
` + ssh.ShellSHA256 + `
if [ ! -f "$c" ] || [ -L "$c" ]; then echo "tricenter-cache absent"; exit 0; fi
(umask "$u"; mkdir -p -- "$d") || exit 3
rm -f -- "$d/.$b.tricenter-cache-"*
t=$(umask 077; mktemp -- "$d/.$b.tricenter-cache-XXXXXX") || exit 3
cp -- "$c" "$t" && sync -- "$t" && h=$(h256 "$t") || { rm -f -- "$t"; exit 3; }
if [ "$h" != "$s" ]; then rm -f -- "$t" "$c"; echo "tricenter-cache corrupt $h"; exit 0; fi
{ chmod -- "$m" "$t" && { [ -z "$o" ] || chown -- "$o" "$t"; } && mv -f -- "$t" "$f"; } || { rm -f -- "$t"; exit 3; }
sync -- "$d" 2>/dev/null
touch -c -- "$c"
echo "tricenter-cache installed"
`

// InstallOptions say which cache file goes where.
type InstallOptions struct {
	CacheDir string // default DefaultCacheDir
	SHA256   string
	// Path is the target: absolute and clean.
	Path  string
	Mode  fs.FileMode // default 0644
	Owner string      // "user:group"; empty leaves root
	// DirMode is the mode of missing parent directories (default 0755).
	DirMode fs.FileMode
}

// Install copies the cache file of o.SHA256 to o.Path through r (as
// root): into a temporary file beside the target, hashed, given its mode
// and owner, renamed over the target. ErrNotCached: the cache has no such
// file; ErrChecksum: the cache file did not hash to its name and was
// removed (fetch it again).
func Install(ctx context.Context, r Runner, o InstallOptions) error {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Mode == 0 {
		o.Mode = 0o644
	}
	if o.DirMode == 0 {
		o.DirMode = 0o755
	}
	if err := CheckCacheDir(o.CacheDir); err != nil {
		return err
	}
	if err := CheckDigest(o.SHA256); err != nil {
		return err
	}
	if !path.IsAbs(o.Path) || path.Clean(o.Path) != o.Path || o.Path == "/" {
		return fmt.Errorf("installing %s from the cache: the path must be absolute and clean", o.Path)
	}
	args := []string{CachePath(o.CacheDir, o.SHA256), o.Path, path.Dir(o.Path), path.Base(o.Path),
		fmt.Sprintf("%o", o.Mode.Perm()), o.Owner, o.SHA256, fmt.Sprintf("%03o", 0o777&^o.DirMode.Perm())}
	for i, a := range args {
		args[i] = shell.Quote(a)
	}
	var out bytes.Buffer
	err := r.Run(ctx, r.AsRoot("sh -c "+shell.Quote(installScript)+" tricenter-cache-install "+strings.Join(args, " ")), nil, &out, nil)
	if err != nil {
		return fmt.Errorf("installing %s from the cache: %w", o.Path, err)
	}
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "tricenter-cache" {
			continue
		}
		switch f[1] {
		case "installed":
			return nil
		case "absent":
			return fmt.Errorf("installing %s: sha256:%s… %w", o.Path, o.SHA256[:12], ErrNotCached)
		case "corrupt":
			got := ""
			if len(f) == 3 {
				got = f[2]
			}
			return fmt.Errorf("installing %s: the cache file of sha256:%s… %w (it has sha256:%s; removed)", o.Path, o.SHA256[:12], ErrChecksum, got)
		}
	}
	return fmt.Errorf("installing %s from the cache: %w", o.Path, errors.New("the host did not confirm"))
}

// addScript copies a file already on the host into its cache: copied to a
// temporary file in the cache, fsynced, hashed, renamed to its digest. It
// prints "tricenter-cache added SHA256 SIZE".
const addScript = `set -u; c=$1 f=$2
` + ssh.ShellSHA256 + `
[ -f "$f" ] || { echo "$f is not a regular file" >&2; exit 1; }
umask 077
mkdir -p -m 0700 -- "$c" && chmod 0700 -- "$c" || exit 3
t=$(mktemp -- "$c/.add.XXXXXX") || exit 3
trap 'rm -f -- "$t"' EXIT
cp -- "$f" "$t" && sync -- "$t" && h=$(h256 "$t") && z=$(stat -c %s -- "$t") || exit 3
mv -f -- "$t" "$c/$h" && sync -- "$c" 2>/dev/null
echo "tricenter-cache added $h $z"
`

// Add copies a file already on the host (an etcd snapshot) into its cache
// through r and returns its sha256 and size: other servers of the center
// can then Fetch it from this one.
func Add(ctx context.Context, r Runner, dir, file string) (sum string, size int64, err error) {
	if err := CheckCacheDir(dir); err != nil {
		return "", 0, err
	}
	if !path.IsAbs(file) || path.Clean(file) != file {
		return "", 0, fmt.Errorf("adding %s to the cache: the path must be absolute and clean", file)
	}
	var out bytes.Buffer
	cmd := "sh -c " + shell.Quote(addScript) + " tricenter-cache-add " + shell.Quote(dir) + " " + shell.Quote(file)
	if err := r.Run(ctx, r.AsRoot(cmd), nil, &out, nil); err != nil {
		return "", 0, fmt.Errorf("adding %s to the cache: %w", file, err)
	}
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "tricenter-cache" && f[1] == "added" && CheckDigest(f[2]) == nil {
			n, err := strconv.ParseInt(f[3], 10, 64)
			if err == nil {
				return f[2], n, nil
			}
		}
	}
	return "", 0, fmt.Errorf("adding %s to the cache: the host did not confirm", file)
}
