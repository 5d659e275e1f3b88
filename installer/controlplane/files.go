package controlplane

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
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

// hostFiles lists every file of a control-plane server, from the PKI and
// the encryption keyring the certificates phase ensured.
func hostFiles(s Settings, cp *pki.ControlPlane, ring *encryption.Keyring, m inventory.Member) ([]file, error) {
	if cp == nil || ring == nil {
		return nil, errors.New("control-plane certificates or encryption keys are not loaded: the certificates phase did not run")
	}
	both := []string{APIServer, ControllerManager}
	api := []string{APIServer}
	files := []file{
		{CACert, cp.CA.CertPEM, 0o644, false, both},
		{CAKey, cp.CA.KeyPEM, 0o600, true, []string{ControllerManager}},
		{CASignerCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.CA.Cert.Raw}), 0o644, false, []string{ControllerManager}},
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
	sec, err := securityFiles(s, ring)
	if err != nil {
		return nil, err
	}
	files = append(files, sec...)
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

// securityFiles are kube-apiserver's security configuration: the audit
// policy, the authentication, admission and encryption configurations.
// Each is 0600 and restarts kube-apiserver when it changes (it reloads the
// encryption and authentication configurations by itself, but a restart,
// one server at a time, makes the change take effect at a known time). The
// encryption configuration holds keys: secret content, no digest shown.
func securityFiles(s Settings, ring *encryption.Keyring) ([]file, error) {
	api := []string{APIServer}
	audit, err := RenderAuditPolicy()
	if err != nil {
		return nil, err
	}
	authn, err := RenderAuthenticationConfig()
	if err != nil {
		return nil, err
	}
	admission, err := RenderAdmissionConfig(s.PodSecurity)
	if err != nil {
		return nil, fmt.Errorf("spec.kubernetes.podSecurity: %w", err)
	}
	enc, err := encryption.Render(ring, s.EncryptedResources())
	if err != nil {
		return nil, fmt.Errorf("encryption configuration: %w", err)
	}
	return []file{
		{AuditPolicy, audit, 0o600, false, api},
		{AuthenticationConfig, authn, 0o600, false, api},
		{AdmissionConfig, admission, 0o600, false, api},
		{EncryptionConfig, enc, 0o600, true, api},
	}, nil
}

// managedFiles are the paths hostFiles writes (Remove deletes them).
func managedFiles() []string {
	out := []string{CACert, CAKey, CASignerCert, APIServerCert, APIServerKey, EtcdCACert, EtcdClientCert, EtcdClientKey,
		KubeletClientCert, KubeletClientKey, FrontProxyCACert, FrontProxyClientCert, FrontProxyClientKey,
		ServiceAccountKey, ServiceAccountPub, ControllerManagerConf, SchedulerConf,
		AuditPolicy, AuthenticationConfig, AdmissionConfig, EncryptionConfig}
	for _, c := range Components() {
		out = append(out, UnitDir+"/"+UnitName(c))
	}
	return out
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
