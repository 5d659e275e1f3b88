package etcd

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

func TestUnitRunsAsEtcd(t *testing.T) {
	u := string(RenderUnit())
	for _, want := range []string{"\nUser=etcd\n", "\nGroup=etcd\n",
		"\nExecStartPre=+/bin/chown -R etcd:etcd /var/lib/etcd\n",
		"\nExecStartPre=+/usr/bin/install -d -m 0700 -o etcd -g etcd /var/lib/etcd\n"} {
		if !strings.Contains(u, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	// The data directory is given to etcd before the process starts.
	if strings.Index(u, "ExecStartPre=+/bin/chown") > strings.Index(u, "ExecStart=") {
		t.Error("the chown runs after ExecStart")
	}
}

func TestHostSetupCreatesSystemUser(t *testing.T) {
	for _, want := range []string{
		"getent group etcd >/dev/null || groupadd --system etcd",
		"getent passwd etcd >/dev/null || useradd --system --gid etcd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin",
		"install -d -m 0750 -o root -g etcd /etc/etcd/pki",
		"install -d -m 0700 -o etcd -g etcd /var/lib/etcd",
	} {
		if !strings.Contains(hostSetupCmd, want) {
			t.Errorf("the host setup lacks %q:\n%s", want, hostSetupCmd)
		}
	}
	// The facts accept only what the setup leaves.
	for _, want := range []string{"root:etcd:750 etcd:etcd:700 ", "echo hostsetup=1", "getent passwd etcd"} {
		if !strings.Contains(hostSetupFacts, want) {
			t.Errorf("the host facts lack %q:\n%s", want, hostSetupFacts)
		}
	}
}

func TestPKIFilesReadableByEtcdOnly(t *testing.T) {
	members := []pki.EtcdMember{{Name: "m1", Address: "198.19.1.10"}}
	for _, shared := range []bool{false, true} {
		s := &pki.Store{Dir: filepath.Join(t.TempDir(), "pki")}
		if shared {
			writeSharedEtcdStoreFor(t, s, members)
		}
		p, err := s.EnsureEtcd(members)
		if err != nil {
			t.Fatal(err)
		}
		if p.SharedPeerCA != shared {
			t.Fatalf("shared %v, want %v", p.SharedPeerCA, shared)
		}
		files, err := PKIFiles(p, "m1")
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range files {
			paths = append(paths, f.Path)
			if f.Mode != 0o640 || f.Owner != "root:etcd" || f.DirMode != 0o750 {
				t.Errorf("%s: mode %o owner %q dir %o, want 0640 root:etcd in a 0750 directory", f.Path, f.Mode, f.Owner, f.DirMode)
			}
			if strings.HasSuffix(f.Path, ".key") != f.Secret {
				t.Errorf("%s: secret %v", f.Path, f.Secret)
			}
		}
		want := []string{CAFile, PeerCAFile, PeerCertFile, PeerKeyFile, ServerCertFile, ServerKeyFile}
		if shared {
			want = slices.DeleteFunc(want, func(p string) bool { return p == PeerCAFile })
		}
		if !slices.Equal(paths, want) {
			t.Errorf("shared %v: files %v, want %v", shared, paths, want)
		}
		if !shared && string(files[1].Data) != string(p.PeerCA.CertPEM) {
			t.Error("peer-ca.crt is not the peer CA")
		}
		env := string(RenderEnv(Settings{ClusterName: "x", SharedPeerCA: shared}, testMember))
		peerCA := "ETCD_PEER_TRUSTED_CA_FILE=" + PeerCAFile + "\n"
		if shared {
			peerCA = "ETCD_PEER_TRUSTED_CA_FILE=" + CAFile + "\n"
		}
		if !strings.Contains(env, peerCA) || !strings.Contains(env, "ETCD_TRUSTED_CA_FILE="+CAFile+"\n") ||
			strings.Contains(env, "ETCD_PEER_CERT_ALLOWED_CN=etcd-peer\n") == shared {
			t.Errorf("shared %v: env\n%s", shared, env)
		}
	}
	if _, err := PKIFiles(&pki.Etcd{}, "m1"); err == nil {
		t.Error("PKIFiles without certificates for the member")
	}
}

func TestHostCommandsParse(t *testing.T) {
	for name, cmd := range map[string]string{"host setup": hostSetupCmd, "facts": factsCmd} {
		if out, err := exec.Command("sh", "-n", "-c", cmd).CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v\n%s", name, err, out)
		}
	}
}
