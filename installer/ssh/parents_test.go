package ssh_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestPutCreatesTraversableParents uploads as root into directories that
// do not exist yet: they are created 0755 (whatever umask the upload runs
// under), so a non-root login reads the file; DirMode 0700 keeps them
// private, and an existing directory keeps its mode.
func TestPutCreatesTraversableParents(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t)
	h := l.Hosts[0]
	p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
	root, err := p.Client(ctx, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), KeyFile: l.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := p.Client(ctx, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), User: "deploy", KeyFile: l.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("readable by everyone\n")
	put := func(dst string, dirMode fs.FileMode) {
		t.Helper()
		o := ssh.PutOptions{SHA256: sum(data), Size: int64(len(data)), Mode: 0o644, DirMode: dirMode}
		if err := root.Put(ctx, bytes.NewReader(data), dst, o); err != nil {
			t.Fatal(err)
		}
	}
	mode := func(p string) fs.FileMode {
		t.Helper()
		st, err := os.Stat(h.Path(p))
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}

	for _, tc := range []struct {
		name     string
		dst      string
		dirMode  fs.FileMode
		created  []string
		want     fs.FileMode
		readable bool
	}{
		{"default", "/srv/etc/tricenter/pki/ca.crt", 0, []string{"/srv/etc", "/srv/etc/tricenter", "/srv/etc/tricenter/pki"}, 0o755, true},
		{"private", "/srv/private/deep/key.pem", 0o700, []string{"/srv/private", "/srv/private/deep"}, 0o700, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put(tc.dst, tc.dirMode)
			for _, d := range tc.created {
				if got := mode(d); got != tc.want {
					t.Errorf("%s created with mode %o, want %o", d, got, tc.want)
				}
			}
			out, err := deploy.Output(ctx, "cat "+shell.Quote(tc.dst))
			if tc.readable && (err != nil || !bytes.Equal(out, data)) {
				t.Errorf("deploy cannot read %s through the created parents: %q, %v", tc.dst, out, err)
			}
			var ee *ssh.ExitError
			if !tc.readable && !errors.As(err, &ee) {
				t.Errorf("deploy read %s through private parents: %q, %v", tc.dst, out, err)
			}
		})
	}

	t.Run("existing directory keeps its mode", func(t *testing.T) {
		if err := os.Mkdir(h.Path("/srv/kept"), 0o750); err != nil {
			t.Fatal(err)
		}
		os.Chmod(h.Path("/srv/kept"), 0o750)
		put("/srv/kept/new/file", 0)
		if got := mode("/srv/kept"); got != 0o750 {
			t.Errorf("existing /srv/kept changed to %o", got)
		}
		if got := mode("/srv/kept/new"); got != 0o755 {
			t.Errorf("/srv/kept/new created with %o, want 755", got)
		}
		if got := mode("/srv/kept/new/file"); got != 0o644 {
			t.Errorf("file mode %o, want 644", got)
		}
	})
}
