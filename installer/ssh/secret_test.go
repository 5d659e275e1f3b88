package ssh_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestPutSecret covers the secret mode of an upload through sudo: the
// host says only whether the target matches, a partial file named after
// the digest is never resumed, and a mismatch names no digest.
func TestPutSecret(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t)
	h := l.Hosts[0]
	p := newPool(t, ssh.Options{KnownHosts: []string{l.KnownHosts}})
	c, err := p.Client(ctx, ssh.Endpoint{Name: h.Name, Address: h.Addr.String(), User: "deploy", KeyFile: l.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("correct horse battery staple\n")
	o := ssh.PutOptions{SHA256: sum(secret), Size: int64(len(secret)), Mode: 0o600, Secret: true}
	const dst = "/srv/secret/pw"

	if err := c.Put(ctx, bytes.NewReader(secret), dst, o); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(h.Path(dst)); !bytes.Equal(got, secret) {
		t.Fatalf("the host holds %q", got)
	}
	if st, _ := os.Stat(h.Path(dst)); st == nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v", st)
	}

	t.Run("identical target", func(t *testing.T) {
		u, err := c.OpenPut(ctx, dst, o)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if st := u.State(); !st.Exists || st.SHA256 != o.SHA256 || st.Size != int64(len(secret)) {
			t.Fatalf("state %+v, want the host to say it matches", st)
		}
	})

	t.Run("same size, other content", func(t *testing.T) {
		other := bytes.ToUpper(secret)
		o2 := o
		o2.SHA256 = sum(other)
		u, err := c.OpenPut(ctx, dst, o2)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if st := u.State(); !st.Exists || st.SHA256 != "" {
			t.Fatalf("state %+v, want a differing file without its digest", st)
		}
	})

	t.Run("a partial file is not resumed", func(t *testing.T) {
		part := h.Path("/srv/secret/.pw.tricenter-" + o.SHA256[:16] + ".part")
		if err := os.WriteFile(part, secret[:5], 0o600); err != nil {
			t.Fatal(err)
		}
		u, err := c.OpenPut(ctx, "/srv/secret/pw", o)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if u.Resume() != 0 {
			t.Fatalf("Resume %d, want 0 for secret content", u.Resume())
		}
	})

	t.Run("mismatch names no digest", func(t *testing.T) {
		o3 := o
		o3.SHA256 = sum([]byte("what the caller believed"))
		err := c.Put(ctx, bytes.NewReader(secret), "/srv/secret/other", o3)
		if !errors.Is(err, ssh.ErrChecksumMismatch) {
			t.Fatalf("got %v, want ErrChecksumMismatch", err)
		}
		for _, d := range []string{o3.SHA256[:12], o.SHA256[:12], string(bytes.TrimSpace(secret))} {
			if strings.Contains(err.Error(), d) {
				t.Errorf("the error %q names %q", err, d)
			}
		}
		if _, err := os.Stat(h.Path("/srv/secret/other")); !os.IsNotExist(err) {
			t.Fatalf("a mismatching secret was installed: %v", err)
		}
		if left, _ := filepath.Glob(h.Path("/srv/secret/.other.tricenter-*")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})
}
