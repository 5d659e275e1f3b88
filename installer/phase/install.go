package phase

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/tricenter/terraform-provider-tricenter/installer/relay"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// File is one file InstallFiles puts on a host: a local file to upload (a
// binary, an image tarball) or content to write (a certificate, a
// configuration, a unit).
type File struct {
	// Path is where the file goes on the host: absolute and clean, without
	// white space (the install record and the state query are read per
	// line and word).
	Path string
	// Local is the local file to upload; when it is empty, Data is the
	// content to write.
	Local string
	Data  []byte
	Mode  fs.FileMode // default 0644
	Owner string      // "user:group"; empty leaves root (or the login user)
	// DirMode is the mode of missing parent directories (default 0755).
	DirMode fs.FileMode
	// Secret content's digest appears nowhere (FileOptions.Secret). A
	// secret local file is not recorded: it is hashed on every run.
	Secret bool
	// SHA256, for Local, is the digest the local file must have (from an
	// artifact manifest), as FileOptions.SHA256.
	SHA256 string
}

func (f File) options() FileOptions {
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	return FileOptions{Mode: mode, Owner: f.Owner, DirMode: f.DirMode, Secret: f.Secret, SHA256: f.SHA256}
}

// Installed says which files InstallFiles changed (or would change, in a
// dry run).
type Installed struct {
	// Changed are the paths whose content, mode or owner changed, in the
	// order InstallFiles was given them. The install record is not one of
	// them.
	Changed []string
}

// Any reports whether any file changed.
func (i Installed) Any() bool { return len(i.Changed) > 0 }

// Has reports whether the file at path changed.
func (i Installed) Has(path string) bool { return slices.Contains(i.Changed, path) }

// ErrInstallPath is wrapped when a path given to InstallFiles cannot be
// installed or recorded.
var ErrInstallPath = errors.New("unusable install path")

// InstallFiles puts files on the host, in order, changing only those whose
// content, mode or owner differ: the one way components install their
// binaries, certificates, configurations and units.
//
// One query, as root, learns which files already match: the host compares
// each file's sha256 with the expected one, which it reads from the
// query's stdin (never a command-line argument), and answers only "same"
// or "differs"; a file whose size differs is not hashed at all. The files
// that differ go through UploadFile or WriteFileOpts, which check again
// and change them through the mutation gate (in a dry run: "would …").
//
// record, when not empty, is the install record of the uploaded (Local)
// files: "sha256 size mtime path" per file, as found after the upload. A
// later run trusts a recorded sha256 while the file's size and mtime still
// match (rsync's quick check), so a re-run does not hash hundreds of
// megabytes of binaries on every server. The record is rewritten when it no
// longer matches (lines of files this call does not install are kept); a
// missing or unreadable record, or a line that does not parse, only means
// those files are hashed once. Secret files are never recorded.
//
// Under a context carrying a Relay (WithRelay), large local files go
// through the relay: each center's first server that lacks a file
// receives it through the jump host into its cache, the others copy it
// from that server inside the center, and every server installs it from
// its own cache (copied and verified against the sha256).
func (h *Host) InstallFiles(ctx context.Context, record string, files []File) (Installed, error) {
	var out Installed
	ws, err := h.wantFiles(record, files)
	if err != nil {
		return out, err
	}
	q, stdin := installQuery(record, ws)
	what := "reading the state of " + ws[0].f.Path
	if len(ws) > 1 {
		what += fmt.Sprintf(" and %d other files", len(ws)-1)
	}
	res, err := h.queryWithInput(ctx, what, q, stdin)
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	cur := parseInstallState(res, len(ws))
	rel := relayFor(ctx, h)
	var cache relay.CacheState
	if rel != nil {
		var carried []wanted
		for i, w := range ws {
			if !cur.files[i].matches(w.f) && rel.carries(h, w, cur.files[i]) {
				carried = append(carried, w)
			}
		}
		if len(carried) > 0 {
			if cache, err = rel.cacheState(ctx, h, carried); err != nil {
				return out, err
			}
		}
	}
	stats := map[string]string{} // recorded path → "size mtime"
	var uploaded []string
	for i, w := range ws {
		st := cur.files[i]
		if st.matches(w.f) {
			h.m.Logger.Debug("Unchanged", "host", h.Name, "path", w.f.Path)
			if w.recorded {
				stats[w.f.Path] = st.size + " " + st.mtime
			}
			continue
		}
		var r FileResult
		switch {
		case rel != nil && rel.carries(h, w, st):
			r, err = rel.install(ctx, h, w, cache.Has[w.sum])
		case w.f.Local != "":
			r, err = h.uploadLocal(ctx, rel, w, st)
		default:
			r, err = h.WriteFileOpts(ctx, w.f.Path, w.f.Data, w.f.options())
		}
		if err != nil {
			return out, err
		}
		if r.Changed {
			out.Changed = append(out.Changed, w.f.Path)
		}
		switch {
		case !w.recorded:
		case r.Changed:
			uploaded = append(uploaded, w.f.Path)
		case st.exists:
			stats[w.f.Path] = st.size + " " + st.mtime
		}
	}
	if record == "" {
		return out, nil
	}
	if len(uploaded) > 0 && !h.DryRun() {
		after, err := h.statFiles(ctx, uploaded)
		if err != nil {
			return out, err
		}
		maps.Copy(stats, after)
	}
	if err := h.writeRecord(ctx, record, ws, stats, cur.record); err != nil {
		return out, err
	}
	return out, nil
}

// wanted is a file with the digest and size it must have.
type wanted struct {
	f        File
	sum      string
	size     int64
	recorded bool // trusted from, and kept in, the install record
}

// wantFiles checks the paths and hashes the local files (once per run,
// through the manager's checksums) and the contents.
func (h *Host) wantFiles(record string, files []File) ([]wanted, error) {
	if len(files) == 0 {
		return nil, errors.New("no files to install")
	}
	if record != "" {
		if err := checkInstallPath(record); err != nil {
			return nil, fmt.Errorf("install record: %w", err)
		}
	}
	ws := make([]wanted, 0, len(files))
	seen := map[string]bool{record: true}
	for _, f := range files {
		if err := checkInstallPath(f.Path); err != nil {
			return nil, err
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("%w: %s is listed twice (or is the install record)", ErrInstallPath, f.Path)
		}
		seen[f.Path] = true
		w := wanted{f: f}
		if f.Local != "" {
			if f.Data != nil {
				return nil, fmt.Errorf("installing %s: both a local file and content given", f.Path)
			}
			var err error
			if w.sum, w.size, err = h.localFile(f.Local, f.options()); err != nil {
				return nil, err
			}
			w.recorded = record != "" && !f.Secret
		} else {
			w.sum, w.size = fsutil.SHA256Hex(f.Data), int64(len(f.Data))
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// checkInstallPath refuses a path the state query or the record could not
// carry: not absolute and clean, or with white space or control
// characters.
func checkInstallPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("%w: %q must be absolute and clean", ErrInstallPath, p)
	}
	if strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%w: %q holds white space or control characters", ErrInstallPath, p)
	}
	return nil
}

// installQuery is the state query of InstallFiles and its stdin: one
// expected sha256 per file, in order. Per file it prints
//
//	tricenter-file INDEX MODE OWNER SIZE MTIME MATCH
//
// (MATCH "=" same content, "!" different, "-" not hashed because the size
// differs) or "tricenter-file INDEX absent|notfile", then "tricenter-rec
// LINE" per line of the record. A recorded file's sha256 comes from the
// record while its size and mtime match.
func installQuery(record string, ws []wanted) (script, stdin string) {
	var b, in strings.Builder
	b.WriteString(ssh.ShellSHA256)
	b.WriteString("R=" + shell.Quote(record) + `
c() {
  read -r w || w=
  if [ ! -f "$2" ]; then
    if [ -e "$2" ]; then echo "tricenter-file $1 notfile"; else echo "tricenter-file $1 absent"; fi
    return 0
  fi
  set -- "$@" $(stat -L -c '%a %U:%G %s %Y' -- "$2")
  m=-
  if [ "$7" = "$3" ]; then
    s=
    if [ "$4" = 1 ] && [ -n "$R" ] && [ -f "$R" ]; then
      s=$(awk -v p="$2" -v z="$7" -v t="$8" '$4 == p && $2 == z && $3 == t { print $1; exit }' "$R" 2>/dev/null)
    fi
    [ -n "$s" ] || s=$(h256 "$2") || s=
    if [ -n "$w" ] && [ "$s" = "$w" ]; then m="="; else m="!"; fi
  fi
  echo "tricenter-file $1 $5 $6 $7 $8 $m"
}
`)
	for i, w := range ws {
		quick := 0
		if w.recorded {
			quick = 1
		}
		fmt.Fprintf(&b, "c %d %s %d %d\n", i, shell.Quote(w.f.Path), w.size, quick)
		in.WriteString(w.sum + "\n")
	}
	b.WriteString(`[ -z "$R" ] || [ ! -f "$R" ] || sed 's/^/tricenter-rec /' "$R"` + "\ntrue\n")
	return b.String(), in.String()
}

// remoteFile is one file as the state query found it.
type remoteFile struct {
	exists bool
	same   bool // the content is the expected one
	mode   fs.FileMode
	owner  string
	size   string // as stat printed them, for the record
	mtime  string
}

func (r remoteFile) matches(f File) bool {
	o := f.options()
	return r.exists && r.same && r.mode == o.Mode.Perm() && (o.Owner == "" || r.owner == o.Owner)
}

// installState is what the state query found.
type installState struct {
	files  []remoteFile // by index; unreported files are zero (installed)
	record []string     // the record's lines as they are
}

// parseInstallState reads installQuery's output for n files. Lines it does
// not know (a login script's) are skipped; a file it cannot read is
// treated as different, so it is checked again by the upload.
func parseInstallState(out string, n int) *installState {
	st := &installState{files: make([]remoteFile, n)}
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "tricenter-rec "); ok {
			st.record = append(st.record, rest)
			continue
		}
		f := strings.Fields(l)
		if len(f) != 7 || f[0] != "tricenter-file" {
			continue
		}
		i, err := strconv.Atoi(f[1])
		if err != nil || i < 0 || i >= n {
			continue
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil || mode > 0o7777 || !isDecimal(f[4]) || !isDecimal(f[5]) || (f[6] != "=" && f[6] != "!" && f[6] != "-") {
			continue
		}
		st.files[i] = remoteFile{exists: true, same: f[6] == "=", mode: fs.FileMode(mode).Perm(), owner: f[3],
			size: f[4], mtime: f[5]}
	}
	return st
}

// isDecimal reports whether s is a size or an mtime as stat prints them.
func isDecimal(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// statFiles reads "size mtime" of files just uploaded ("0 0" for one that
// cannot be read).
func (h *Host) statFiles(ctx context.Context, paths []string) (map[string]string, error) {
	var b strings.Builder
	for i, p := range paths {
		fmt.Fprintf(&b, "echo \"tricenter-stat %d $(stat -L -c '%%s %%Y' -- %s 2>/dev/null || echo 0 0)\"\n", i, shell.Quote(p))
	}
	out, err := h.Query(ctx, b.String())
	if err != nil {
		return nil, fmt.Errorf("reading the uploaded files: %w", err)
	}
	stats := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "tricenter-stat" || !isDecimal(f[2]) || !isDecimal(f[3]) {
			continue
		}
		if i, err := strconv.Atoi(f[1]); err == nil && i >= 0 && i < len(paths) {
			stats[paths[i]] = f[2] + " " + f[3]
		}
	}
	return stats, nil
}

// parseRecordLine reads "sha256 size mtime path".
func parseRecordLine(l string) (path string, ok bool) {
	f := strings.Fields(l)
	if len(f) != 4 || len(f[0]) != 64 || strings.Trim(f[0], "0123456789abcdef") != "" ||
		!isDecimal(f[1]) || !isDecimal(f[2]) || checkInstallPath(f[3]) != nil {
		return "", false
	}
	return f[3], true
}

// recordContent is the install record after this call: the current
// record's valid lines for other files, and a line per recorded file
// ("0 0" for size and mtime not known, e.g. in a dry run), sorted by path.
func recordContent(ws []wanted, stats map[string]string, current []string) string {
	lines := map[string]string{}
	for _, l := range current {
		if p, ok := parseRecordLine(l); ok {
			lines[p] = strings.Join(strings.Fields(l), " ")
		}
	}
	for _, w := range ws {
		if !w.recorded {
			continue
		}
		st, ok := stats[w.f.Path]
		if !ok {
			st = "0 0"
		}
		lines[w.f.Path] = w.sum + " " + st + " " + w.f.Path
	}
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(lines)) {
		b.WriteString(lines[p] + "\n")
	}
	return b.String()
}

// writeRecord rewrites the install record when it no longer matches.
func (h *Host) writeRecord(ctx context.Context, record string, ws []wanted, stats map[string]string, current []string) error {
	if !slices.ContainsFunc(ws, func(w wanted) bool { return w.recorded }) {
		return nil
	}
	content := recordContent(ws, stats, current)
	was := ""
	if len(current) > 0 {
		was = strings.Join(current, "\n") + "\n"
	}
	if content == was {
		return nil
	}
	if _, err := h.WriteFile(ctx, record, []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing the install record %s: %w", record, err)
	}
	return nil
}
