package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"take", "--bogus"}, "Error: unknown flag: --bogus"},
		{[]string{"take", "extra"}, `Error: unknown command "extra" for "tricenter-snapshot take"`},
		{[]string{"list", "-o", "yaml", "--dir", dir}, `Error: --output "yaml": use table or json`},
		{[]string{"list", "--dir", dir, "--config", "x.json"}, "Error: --dir and --config: give one"},
		{[]string{"take", "--log-format", "xml", "--config", "x.json"}, `Error: --log-format "xml": use text or json`},
		{[]string{"take", "--config", filepath.Join(dir, "missing.json")}, "Error: reading the snapshot configuration: open " + filepath.Join(dir, "missing.json")},
		{[]string{"frobnicate"}, `Error: unknown command "frobnicate" for "tricenter-snapshot"`},
	} {
		_, errOut, code := runCLI(t, tc.args...)
		if code != 1 || !strings.HasPrefix(errOut, tc.err) {
			t.Errorf("%v: exit %d, stderr %q, want 1 and %q", tc.args, code, errOut, tc.err)
		}
	}
	out, _, code := runCLI(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "tricenter-snapshot version ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	out, _, code = runCLI(t, "help")
	if code != 0 || !strings.Contains(out, "take") || !strings.Contains(out, "list") {
		t.Errorf("help: exit %d, %q", code, out)
	}
}

// store writes a snapshot record and a sealed "hello" into d.
func store(t *testing.T, d backup.Dir, at time.Time, member string) backup.Meta {
	t.Helper()
	id, err := backup.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	sid, err := backup.SnapshotID("lab", at, member)
	if err != nil {
		t.Fatal(err)
	}
	m := backup.Meta{ID: sid, Format: backup.Format, Cluster: "lab", TakenAt: at, Member: member, MemberCenter: "dc3",
		StoredOn: "dc1-r01-s01", StoredCenter: "dc1", Revision: 9, Keys: 3, EtcdVersion: "3.6.16",
		Recipient: backup.EncodeRecipient(id.PublicKey())}
	m, err = d.Write(m, func(w io.Writer) (int64, error) {
		return backup.Seal(w, strings.NewReader("hello"), id.PublicKey())
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestListJSON(t *testing.T) {
	d := backup.Dir{Path: t.TempDir()}
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	older := store(t, d, t0, "dc3-r01-s01")
	newer := store(t, d, t0.Add(time.Hour), "dc3-r02-s01")

	out, errOut, code := runCLI(t, "list", "--dir", d.Path, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []backup.Meta
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(got) != 2 || got[0] != newer || got[1] != older {
		t.Fatalf("list -o json:\n%s\nwant %s then %s", out, newer.ID, older.ID)
	}
	if strings.Contains(out, `"check"`) {
		t.Errorf("a check field without --check:\n%s", out)
	}

	// The same through a configuration file.
	cfg := filepath.Join(t.TempDir(), "snapshot.json")
	id, err := backup.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(backup.Config{Cluster: "lab", StoredOn: "dc1-r01-s01", StoredCenter: "dc1", Dir: d.Path, Keep: 3,
		Recipient: backup.EncodeRecipient(id.PublicKey()), CACert: "/etc/x/ca.crt", Cert: "/etc/x/c.crt", Key: "/etc/x/c.key",
		Sources: []backup.Source{{Name: "dc3-r01-s01", Center: "dc3", URL: "https://127.0.0.1:2379"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	viaConfig, _, code := runCLI(t, "list", "--config", cfg, "-o", "json")
	if code != 0 || viaConfig != out {
		t.Fatalf("list --config: exit %d\n%s", code, viaConfig)
	}

	table, _, code := runCLI(t, "list", "--dir", d.Path)
	if code != 0 || !strings.HasPrefix(table, "ID ") || strings.Index(table, newer.ID) > strings.Index(table, older.ID) ||
		!strings.Contains(table, "dc3-r02-s01 (dc3)") {
		t.Fatalf("list table: exit %d\n%s", code, table)
	}

	// --check: a changed byte in the older file.
	p := d.SealedPath(older.ID)
	sealed, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sealed[60] ^= 1
	if err := os.WriteFile(p, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	// It still succeeds: the engine reads the listing over SSH.
	out, errOut, code = runCLI(t, "list", "--dir", d.Path, "-o", "json", "--check")
	if code != 0 || errOut != "" {
		t.Fatalf("list --check: exit %d, stderr %q", code, errOut)
	}
	var checked []struct {
		ID    string `json:"id"`
		Check string `json:"check"`
	}
	if err := json.Unmarshal([]byte(out), &checked); err != nil {
		t.Fatal(err)
	}
	if len(checked) != 2 || checked[0].Check != "ok" || !strings.Contains(checked[1].Check, "sealed file differs from its record: ") {
		t.Fatalf("list --check -o json:\n%s", out)
	}
	table, _, _ = runCLI(t, "list", "--dir", d.Path, "--check")
	if !strings.Contains(table, "CHECK") || !strings.Contains(table, " ok") || !strings.Contains(table, "sealed file differs from its record: ") {
		t.Fatalf("list --check table:\n%s", table)
	}

	none := filepath.Join(t.TempDir(), "none")
	empty, _, code := runCLI(t, "list", "--dir", none)
	if code != 0 || empty != "No snapshots\n" {
		t.Fatalf("an empty directory: exit %d, %q", code, empty)
	}
	empty, _, code = runCLI(t, "list", "--dir", none, "-o", "json", "--check")
	if code != 0 || empty != "[]\n" {
		t.Fatalf("an empty directory in JSON: exit %d, %q", code, empty)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 73844: "72.1 KiB", 5 << 30: "5.0 GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestTakeFails: take exits 1 naming each source and why, and prints no
// snapshot.
func TestTakeFails(t *testing.T) {
	dir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	p, err := store.EnsureEtcd(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.Save(filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), p.CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + l.Addr().String()
	l.Close() // nothing listens there now
	id, err := backup.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(backup.Config{Cluster: "lab", StoredOn: "dc1-r01-s01", StoredCenter: "dc1", Dir: filepath.Join(dir, "snapshots"), Keep: 3,
		Recipient: backup.EncodeRecipient(id.PublicKey()), CACert: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "c.crt"), Key: filepath.Join(dir, "c.key"),
		Sources: []backup.Source{{Name: "dc3-r01-s01", Center: "dc3", URL: url}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "snapshot.json")
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "take", "--config", cfg)
	want := "Error: no etcd member gave a snapshot: dc3-r01-s01 (dc3, " + url + "): connecting: "
	if code != 1 || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, `msg="Skipping etcd member"`) {
		t.Fatalf("take: exit %d, stdout %q, stderr:\n%s\nwant 1 and %q", code, out, errOut, want)
	}
}
