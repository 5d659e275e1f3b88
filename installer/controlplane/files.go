package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// LocalAPIServer is the URL the controller-manager and the scheduler use:
// the apiserver on their own server (its certificate names 127.0.0.1).
var LocalAPIServer = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(APIServerPort))

// Kubeconfig renders the kubeconfig of a control-plane component (user is
// its certificate's common name) with clientcmd. It holds a private key:
// write it as secret content.
func Kubeconfig(s Settings, user string, ca, certPEM, keyPEM []byte) ([]byte, error) {
	return kubeconfig.Render(kubeconfig.Config{Cluster: s.ClusterName, User: user, Server: LocalAPIServer,
		CA: ca, CertPEM: certPEM, KeyPEM: keyPEM})
}

// file is one file the configuration phase writes on a server.
type file struct {
	path string // absolute, as the server sees it
	data []byte
	mode fs.FileMode
	// secret content (keys, kubeconfigs) never shows its digest.
	secret bool
	// readers are the components restarted when the file changes.
	readers []string
}

// hostFiles lists every file of a control-plane server, from the PKI the
// certificates phase ensured.
func hostFiles(s Settings, cp *pki.ControlPlane, m inventory.Member) ([]file, error) {
	if cp == nil {
		return nil, errors.New("control-plane certificates are not loaded: the certificates phase did not run")
	}
	both := []string{APIServer, ControllerManager}
	api := []string{APIServer}
	files := []file{
		{CACert, cp.CA.CertPEM, 0o644, false, both},
		{CAKey, cp.CA.KeyPEM, 0o600, true, []string{ControllerManager}},
		{APIServerCert, cp.APIServer.CertPEM, 0o644, false, api},
		{APIServerKey, cp.APIServer.KeyPEM, 0o600, true, api},
		{EtcdCACert, cp.EtcdCA.CertPEM, 0o644, false, api},
		{EtcdClientCert, cp.EtcdClient.CertPEM, 0o644, false, api},
		{EtcdClientKey, cp.EtcdClient.KeyPEM, 0o600, true, api},
		{KubeletClientCert, cp.KubeletClient.CertPEM, 0o644, false, api},
		{KubeletClientKey, cp.KubeletClient.KeyPEM, 0o600, true, api},
		{FrontProxyCACert, cp.FrontProxyCA.CertPEM, 0o644, false, both},
		{FrontProxyClientCert, cp.FrontProxyClient.CertPEM, 0o644, false, api},
		{FrontProxyClientKey, cp.FrontProxyClient.KeyPEM, 0o600, true, api},
		{ServiceAccountKey, cp.ServiceAccount.KeyPEM, 0o600, true, both},
		{ServiceAccountPub, cp.ServiceAccount.PublicPEM, 0o644, false, api},
	}
	kcm, err := Kubeconfig(s, pki.ControllerManagerUser, cp.CA.CertPEM, cp.ControllerManager.CertPEM, cp.ControllerManager.KeyPEM)
	if err != nil {
		return nil, err
	}
	sched, err := Kubeconfig(s, pki.SchedulerUser, cp.CA.CertPEM, cp.Scheduler.CertPEM, cp.Scheduler.KeyPEM)
	if err != nil {
		return nil, err
	}
	files = append(files,
		file{ControllerManagerConf, kcm, 0o600, true, []string{ControllerManager}},
		file{SchedulerConf, sched, 0o600, true, []string{Scheduler}})
	for _, c := range Components() {
		flags, err := Flags(c, s, m.Address)
		if err != nil {
			return nil, err
		}
		unit, err := RenderUnit(c, flags)
		if err != nil {
			return nil, err
		}
		files = append(files, file{UnitDir + "/" + UnitName(c), unit, 0o644, false, []string{c}})
	}
	return files, nil
}

// managedFiles are the paths hostFiles writes (for the state query).
func managedFiles() []string {
	out := []string{CACert, CAKey, APIServerCert, APIServerKey, EtcdCACert, EtcdClientCert, EtcdClientKey,
		KubeletClientCert, KubeletClientKey, FrontProxyCACert, FrontProxyClientCert, FrontProxyClientKey,
		ServiceAccountKey, ServiceAccountPub, ControllerManagerConf, SchedulerConf}
	for _, c := range Components() {
		out = append(out, UnitDir+"/"+UnitName(c))
	}
	return out
}

// remoteFile is a managed file as found on a server.
type remoteFile struct {
	sum  string
	mode fs.FileMode
}

// fileStates is what one query learns about a server's managed files.
type fileStates struct {
	files  map[string]remoteFile // host path → state (binaries too)
	stat   map[string]string     // binary host path → "size mtime"
	record string                // current content of BinariesRecord
}

// same reports whether the file at hostPath already has sum and mode.
func (f *fileStates) same(hostPath, sum string, mode fs.FileMode) bool {
	c, ok := f.files[hostPath]
	return ok && c.sum == sum && c.mode == mode.Perm()
}

// parseFileStates reads the output of the state query: "MODE SHA256 PATH"
// per file, "stat SIZE MTIME PATH" per binary and "rec SHA256 SIZE MTIME
// PATH" per line of the binaries record.
func parseFileStates(out string) *fileStates {
	fs := &fileStates{files: map[string]remoteFile{}, stat: map[string]string{}}
	var rec []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 5 && f[0] == "rec":
			rec = append(rec, strings.Join(f[1:], " "))
		case len(f) == 4 && f[0] == "stat":
			fs.stat[f[3]] = f[1] + " " + f[2]
		case len(f) == 3 && len(f[1]) == 64:
			mode, err := strconv.ParseUint(f[0], 8, 12)
			if err != nil {
				continue
			}
			fs.files[f[2]] = remoteFile{sum: f[1], mode: fsMode(mode)}
		}
	}
	if len(rec) > 0 {
		fs.record = strings.Join(rec, "\n") + "\n"
	}
	return fs
}

func fsMode(m uint64) fs.FileMode { return fs.FileMode(m).Perm() }

// unprefix maps a path the query printed (under Options.Root) back to the
// host path.
func (r *run) unprefix(p string) string {
	if r.o.Root == "" {
		return p
	}
	return strings.TrimPrefix(p, strings.TrimSuffix(r.o.Root, "/"))
}

// rekey turns the query's written paths into host paths.
func (r *run) rekey(fs *fileStates) {
	files := make(map[string]remoteFile, len(fs.files))
	for p, f := range fs.files {
		files[r.unprefix(p)] = f
	}
	stat := make(map[string]string, len(fs.stat))
	for p, s := range fs.stat {
		stat[r.unprefix(p)] = s
	}
	fs.files, fs.stat = files, stat
}

// errNoCerts is wrapped when preflight finds the etcd client certificate
// missing.
var errNoCerts = errors.New("etcd client certificate missing")

// checkEtcdClient checks the store holds the apiserver's etcd client
// certificate, signed by the etcd CA.
func checkEtcdClient(s *pki.Store) error {
	ca, err := s.LoadCA(pki.EtcdCA)
	if err != nil {
		return fmt.Errorf("%w: %w: apply etcd first (tricenter apply --only etcd)", errNoCerts, err)
	}
	kp, err := s.Load(pki.EtcdCA, pki.APIServerClient)
	if err != nil {
		return fmt.Errorf("%w: %w: apply etcd first (tricenter apply --only etcd)", errNoCerts, err)
	}
	if err := kp.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		return fmt.Errorf("%w: %s is not signed by the etcd CA: apply etcd again to reissue it", errNoCerts, s.Where(pki.EtcdCA, pki.APIServerClient+".crt"))
	}
	return nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
