package phase

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// runInstallQuery runs installQuery's script on this machine's /bin/sh
// (the same script a host runs as root) and parses its output.
func runInstallQuery(t *testing.T, record string, ws []wanted) *installState {
	t.Helper()
	script, stdin := installQuery(record, ws)
	for _, w := range ws {
		if strings.Contains(script, w.sum) {
			t.Fatalf("the query's command line holds the digest of %s", w.f.Path)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("query: %v\n%s", err, out)
	}
	return parseInstallState(string(out), len(ws))
}

func writeT(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func statLine(t *testing.T, p string) string {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(st.Size(), 10) + " " + strconv.FormatInt(st.ModTime().Unix(), 10)
}

// TestInstallQueryOnLocalShell runs the state query against files on this
// machine: same content, other content of the same size, another size,
// absent, not a regular file; a recorded binary trusted from the record
// while size and mtime match, hashed when they do not or when the record
// does not parse.
func TestInstallQueryOnLocalShell(t *testing.T) {
	dir := t.TempDir()
	bin, conf, other, longer := filepath.Join(dir, "bin"), filepath.Join(dir, "conf"), filepath.Join(dir, "other"), filepath.Join(dir, "longer")
	writeT(t, bin, "binary v1", 0o755)
	writeT(t, conf, "conf", 0o640)
	writeT(t, other, "conf", 0o644)
	writeT(t, longer, "conf, longer", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := fsutil.SHA256Hex
	ws := []wanted{
		{f: File{Path: bin, Local: "/artifacts/bin"}, sum: sum([]byte("binary v1")), size: 9, recorded: true},
		{f: File{Path: conf, Data: []byte("conf")}, sum: sum([]byte("conf")), size: 4},
		{f: File{Path: other, Data: []byte("CONF")}, sum: sum([]byte("CONF")), size: 4},
		{f: File{Path: longer, Data: []byte("conf")}, sum: sum([]byte("conf")), size: 4},
		{f: File{Path: filepath.Join(dir, "absent"), Data: []byte("x")}, sum: sum([]byte("x")), size: 1},
		{f: File{Path: filepath.Join(dir, "sub"), Data: []byte("x")}, sum: sum([]byte("x")), size: 1},
	}
	record := filepath.Join(dir, "record")
	owner := func() string {
		out, err := exec.Command("stat", "-c", "%U:%G", conf).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}()

	st := runInstallQuery(t, record, ws) // no record yet: hashed
	want := []remoteFile{
		{exists: true, same: true, mode: 0o755, owner: owner, size: "9", mtime: strings.Fields(statLine(t, bin))[1]},
		{exists: true, same: true, mode: 0o640, owner: owner, size: "4", mtime: strings.Fields(statLine(t, conf))[1]},
		{exists: true, same: false, mode: 0o644, owner: owner, size: "4", mtime: strings.Fields(statLine(t, other))[1]},
		{exists: true, same: false, mode: 0o644, owner: owner, size: "12", mtime: strings.Fields(statLine(t, longer))[1]},
		{}, {},
	}
	for i := range want {
		if st.files[i] != want[i] {
			t.Errorf("file %d (%s): %+v, want %+v", i, ws[i].f.Path, st.files[i], want[i])
		}
	}
	if len(st.record) != 0 {
		t.Errorf("record lines without a record: %q", st.record)
	}
	if !st.files[0].matches(File{Mode: 0o755}) || st.files[1].matches(File{Mode: 0o644}) ||
		!st.files[1].matches(File{Mode: 0o640, Owner: owner}) || st.files[1].matches(File{Mode: 0o640, Owner: "nobody:nogroup"}) {
		t.Error("matches compares content, mode and owner wrongly")
	}

	// A record line with the binary's size and mtime is trusted: its
	// (here wrong) sha256 is taken without hashing the file.
	wrong := strings.Repeat("0", 64)
	writeT(t, record, wrong+" "+statLine(t, bin)+" "+bin+"\n", 0o644)
	st = runInstallQuery(t, record, ws)
	if !st.files[0].exists || st.files[0].same {
		t.Errorf("a record matching size and mtime was not trusted: %+v", st.files[0])
	}
	if len(st.record) != 1 || !strings.HasPrefix(st.record[0], wrong+" ") {
		t.Errorf("record lines %q", st.record)
	}
	// The record is only for recorded files.
	writeT(t, record, sum([]byte("CONF"))+" "+statLine(t, other)+" "+other+"\n", 0o644)
	if st = runInstallQuery(t, record, ws); st.files[2].same {
		t.Error("a file not recorded was taken from the record")
	}

	// Another mtime: the record is stale and the file is hashed.
	old := time.Now().Add(-time.Hour)
	writeT(t, record, wrong+" "+statLine(t, bin)+" "+bin+"\n", 0o644)
	if err := os.Chtimes(bin, old, old); err != nil {
		t.Fatal(err)
	}
	if st = runInstallQuery(t, record, ws); !st.files[0].same {
		t.Errorf("a stale record line was trusted: %+v", st.files[0])
	}
	// A record that does not parse only means hashing.
	writeT(t, record, "garbage\n\x00\x01 not a record\n", 0o644)
	if st = runInstallQuery(t, record, ws); !st.files[0].same || len(st.record) != 2 {
		t.Errorf("with an unparsable record: %+v, lines %q", st.files[0], st.record)
	}
	// No record at all (and none asked for).
	if st = runInstallQuery(t, "", ws); !st.files[0].same || st.record != nil {
		t.Errorf("without a record: %+v, lines %q", st.files[0], st.record)
	}
}

func TestParseInstallState(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	out := "Welcome to the server\n" +
		"tricenter-file 0 755 root:root 26882210 1795256175 =\n" +
		"tricenter-file 1 600 etcd:etcd 12 1795256100 !\n" +
		"tricenter-file 2 absent\n" +
		"tricenter-file 3 644 root:root 1 2 ?\n" + // unknown verdict: not trusted
		"tricenter-file 9 644 root:root 1 2 =\n" + // no such file
		"tricenter-file 4 99x root:root 1 2 =\n" +
		"tricenter-rec " + sum + " 26882210 1795256175 /usr/local/bin/etcd\n" +
		"tricenter-rec \n"
	st := parseInstallState(out, 5)
	want := []remoteFile{
		{exists: true, same: true, mode: 0o755, owner: "root:root", size: "26882210", mtime: "1795256175"},
		{exists: true, same: false, mode: 0o600, owner: "etcd:etcd", size: "12", mtime: "1795256100"},
		{}, {}, {},
	}
	for i := range want {
		if st.files[i] != want[i] {
			t.Errorf("file %d: %+v, want %+v", i, st.files[i], want[i])
		}
	}
	if len(st.record) != 2 || st.record[0] != sum+" 26882210 1795256175 /usr/local/bin/etcd" || st.record[1] != "" {
		t.Errorf("record %q", st.record)
	}
}

func FuzzParseInstallState(f *testing.F) {
	f.Add("tricenter-file 0 755 root:root 1 2 =\ntricenter-rec a b c d\n", 2)
	f.Add("tricenter-file 1 4755 a:b 0 0 -\ntricenter-file 0 absent\n", 1)
	f.Fuzz(func(t *testing.T, out string, n int) {
		n = min(max(n, 0), 64)
		st := parseInstallState(out, n)
		if len(st.files) != n {
			t.Fatalf("%d files for %d", len(st.files), n)
		}
		for i, r := range st.files {
			if !r.exists && r != (remoteFile{}) {
				t.Fatalf("file %d not found but has state %+v", i, r)
			}
			if r.exists && (r.mode&^0o777 != 0 || !isDecimal(r.size) || !isDecimal(r.mtime)) {
				t.Fatalf("file %d: %+v", i, r)
			}
		}
		for _, l := range st.record {
			if strings.Contains(l, "\n") {
				t.Fatalf("record line %q", l)
			}
		}
	})
}

// TestRecordContent: the record keeps the valid lines of files this call
// does not install, drops lines that do not parse, writes "0 0" where size
// and mtime are not known, leaves out files not recorded, and sorts by
// path — so the records tricenter wrote before (etcd's, the control
// plane's, in path order) are read back unchanged.
func TestRecordContent(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	ws := []wanted{
		{f: File{Path: "/usr/local/bin/kubectl"}, sum: a, recorded: true},
		{f: File{Path: "/usr/local/bin/kube-apiserver"}, sum: b, recorded: true},
		{f: File{Path: "/etc/kubernetes/pki/ca.key"}, sum: a},
	}
	current := []string{
		a + " 1 2 /usr/local/bin/kubectl",
		"not a record line",
		b + "  7 8  /usr/local/bin/kubelet",
		"XYZ 1 2 /usr/local/bin/etcd",
		a + " 1 2 relative/path",
	}
	got := recordContent(ws, map[string]string{"/usr/local/bin/kubectl": "10 20"}, current)
	want := b + " 0 0 /usr/local/bin/kube-apiserver\n" + a + " 10 20 /usr/local/bin/kubectl\n" + b + " 7 8 /usr/local/bin/kubelet\n"
	if got != want {
		t.Fatalf("record:\n%s\nwant:\n%s", got, want)
	}
	// A record as the control plane wrote it before reads back the same.
	prev := []string{
		a + " 100 1700000000 /usr/local/bin/kube-apiserver",
		a + " 101 1700000001 /usr/local/bin/kube-controller-manager",
		a + " 102 1700000002 /usr/local/bin/kube-scheduler",
		a + " 103 1700000003 /usr/local/bin/kubectl",
	}
	var ws2 []wanted
	stats := map[string]string{}
	for _, l := range prev {
		f := strings.Fields(l)
		ws2 = append(ws2, wanted{f: File{Path: f[3]}, sum: a, recorded: true})
		stats[f[3]] = f[1] + " " + f[2]
	}
	if got := recordContent(ws2, stats, prev); got != strings.Join(prev, "\n")+"\n" {
		t.Fatalf("an unchanged record reads back as:\n%s", got)
	}
}

// TestWantFiles: paths are checked before anything is hashed or sent;
// secret local files are not recorded; a local file that no longer has
// its manifest digest is refused.
func TestWantFiles(t *testing.T) {
	m := &Manager{Cluster: invgen.Generate(invgen.Default())}
	defer m.Close()
	hs, err := m.Hosts(inventory.Selector{})
	if err != nil || len(hs) == 0 {
		t.Fatalf("hosts: %v", err)
	}
	h := hs[0]
	local := filepath.Join(t.TempDir(), "etcd")
	writeT(t, local, "etcd binary", 0o755)
	ws, err := h.wantFiles("/etc/etcd/binaries.sha256", []File{
		{Path: "/usr/local/bin/etcd", Local: local, Mode: 0o755, SHA256: fsutil.SHA256Hex([]byte("etcd binary"))},
		{Path: "/etc/etcd/pki/peer.key", Local: local, Secret: true},
		{Path: "/etc/etcd/etcd.env", Data: []byte("ETCD_NAME=a\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !ws[0].recorded || ws[1].recorded || ws[2].recorded || ws[0].size != 11 || ws[2].sum != fsutil.SHA256Hex([]byte("ETCD_NAME=a\n")) {
		t.Fatalf("wanted %+v", ws)
	}
	if ws, _ := h.wantFiles("", []File{{Path: "/usr/local/bin/etcd", Local: local}}); ws[0].recorded {
		t.Fatal("recorded without a record")
	}
	for name, tc := range map[string]struct {
		record string
		files  []File
		want   string
	}{
		"relative":      {"", []File{{Path: "usr/local/bin/etcd", Data: []byte("x")}}, "absolute and clean"},
		"unclean":       {"", []File{{Path: "/usr/local//bin/etcd", Data: []byte("x")}}, "absolute and clean"},
		"space":         {"", []File{{Path: "/etc/my file", Data: []byte("x")}}, "white space"},
		"newline":       {"", []File{{Path: "/etc/a\nb", Data: []byte("x")}}, "white space"},
		"twice":         {"", []File{{Path: "/etc/a", Data: []byte("x")}, {Path: "/etc/a", Data: []byte("y")}}, "listed twice"},
		"the record":    {"/etc/a", []File{{Path: "/etc/a", Data: []byte("x")}}, "listed twice"},
		"bad record":    {"record", []File{{Path: "/etc/a", Data: []byte("x")}}, "install record"},
		"local & data":  {"", []File{{Path: "/etc/a", Local: local, Data: []byte("x")}}, "both a local file and content"},
		"none":          {"", nil, "no files"},
		"local missing": {"", []File{{Path: "/etc/a", Local: local + ".missing"}}, "no such file"},
	} {
		if _, err := h.wantFiles(tc.record, tc.files); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
	_, err = h.wantFiles("", []File{{Path: "/usr/local/bin/etcd", Local: local, SHA256: fsutil.SHA256Hex([]byte("the manifest's"))}})
	if !errors.Is(err, ErrLocalChanged) {
		t.Fatalf("a local file without its manifest digest: %v", err)
	}
}
