package controlplane

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Settings are the cluster-wide values the rendered files use.
type Settings struct {
	ClusterName   string
	ServiceCIDR   string
	ClusterDomain string
	// EtcdServers are the client URLs of every etcd member.
	EtcdServers []string
	// PodSecurity are the cluster's Pod Security admission defaults
	// (PodSecurityFor: the inventory's, defaults filled in).
	PodSecurity inventory.PodSecurity
	// EncryptConfigMaps encrypts ConfigMaps in etcd too (Secrets always
	// are): spec.kubernetes.encryption.configMaps.
	EncryptConfigMaps bool
}

// EncryptedResources are the resources kube-apiserver encrypts in etcd.
func (s Settings) EncryptedResources() []string {
	if s.EncryptConfigMaps {
		return []string{encryption.Secrets, encryption.ConfigMaps}
	}
	return []string{encryption.Secrets}
}

// ServiceAccountIssuer is the issuer of service-account tokens.
func (s Settings) ServiceAccountIssuer() string {
	return "https://kubernetes.default.svc." + s.ClusterDomain
}

// Files on the hosts (rendered files name these absolute paths).
const (
	CACert                = PKIDir + "/ca.crt"
	CAKey                 = PKIDir + "/ca.key"
	CASignerCert          = PKIDir + "/ca-signer.crt" // the signing CA alone (see ControllerManagerFlags)
	APIServerCert         = PKIDir + "/apiserver.crt"
	APIServerKey          = PKIDir + "/apiserver.key"
	EtcdCACert            = PKIDir + "/etcd/ca.crt"
	EtcdClientCert        = PKIDir + "/apiserver-etcd-client.crt"
	EtcdClientKey         = PKIDir + "/apiserver-etcd-client.key"
	KubeletClientCert     = PKIDir + "/apiserver-kubelet-client.crt"
	KubeletClientKey      = PKIDir + "/apiserver-kubelet-client.key"
	FrontProxyCACert      = PKIDir + "/front-proxy-ca.crt"
	FrontProxyClientCert  = PKIDir + "/front-proxy-client.crt"
	FrontProxyClientKey   = PKIDir + "/front-proxy-client.key"
	ServiceAccountKey     = PKIDir + "/sa.key"
	ServiceAccountPub     = PKIDir + "/sa.pub"
	ControllerManagerConf = ConfDir + "/controller-manager.conf"
	SchedulerConf         = ConfDir + "/scheduler.conf"
)

// The control plane's security configuration on a server (each 0600,
// read by kube-apiserver only) and the audit log.
const (
	// AuditPolicy is the audit policy (--audit-policy-file).
	AuditPolicy = ConfDir + "/audit-policy.yaml"
	// AuthenticationConfig is the AuthenticationConfiguration
	// (--authentication-config): anonymous requests only to the health
	// endpoints.
	AuthenticationConfig = ConfDir + "/authentication-config.yaml"
	// AdmissionConfig is the AdmissionConfiguration
	// (--admission-control-config-file): the Pod Security defaults.
	AdmissionConfig = ConfDir + "/admission-config.yaml"
	// EncryptionConfig is the EncryptionConfiguration
	// (--encryption-provider-config): the keys Secrets are encrypted with
	// in etcd (installer/encryption).
	EncryptionConfig = ConfDir + "/encryption-config.yaml"
	// AuditLogDir holds the audit log; it is created 0700 (root) before
	// kube-apiserver starts. Remove leaves it: audit logs are records.
	AuditLogDir = "/var/log/kubernetes/audit"
	// AuditLog is the audit log (--audit-log-path), rotated by
	// kube-apiserver.
	AuditLog = AuditLogDir + "/audit.log"
)

// APIServerFlags are kube-apiserver's flags on the server at address.
// Everything not named keeps the Kubernetes default (admission plugins
// included: NodeRestriction and PodSecurity, itself a default, are named).
// Anonymous requests reach only /livez, /readyz and /healthz
// (AuthenticationConfig; --anonymous-auth must then be absent), readable by
// system:public-info-viewer (the BGP agent's health check among others).
// Bootstrap-token authentication stays off: kubelets get client
// certificates from tricenter's PKI (installer/node), not TLS bootstrap.
//
// Hardening beyond the Kubernetes defaults (CIS Kubernetes Benchmark
// section 1.2): no profiling endpoints; TLS 1.2 or later with ECDHE and
// AEAD suites only; an audit log (AuditPolicy, AuditLog, rotated);
// Secrets encrypted in etcd (EncryptionConfig, reloaded when it changes);
// Pod Security admission defaults (AdmissionConfig); projected
// service-account tokens valid for what they ask (no extension to a year).
func APIServerFlags(s Settings, address string) []string {
	flags := []string{
		"--admission-control-config-file=" + AdmissionConfig,
		"--advertise-address=" + address,
		"--allow-privileged=true",
	}
	flags = append(flags, auditFlags()...)
	flags = append(flags,
		"--authentication-config="+AuthenticationConfig,
		"--authorization-mode=Node,RBAC",
		// The API VIP is on lo of every control-plane server (added by the
		// node BGP agent): listening everywhere accepts it.
		"--bind-address=0.0.0.0",
		"--client-ca-file="+CACert,
		"--enable-admission-plugins=NodeRestriction,PodSecurity",
		"--encryption-provider-config="+EncryptionConfig,
		"--encryption-provider-config-automatic-reload=true",
		"--etcd-cafile="+EtcdCACert,
		"--etcd-certfile="+EtcdClientCert,
		"--etcd-keyfile="+EtcdClientKey,
		"--etcd-servers="+strings.Join(EtcdServersFor(s, address), ","),
		"--kubelet-certificate-authority="+CACert,
		"--kubelet-client-certificate="+KubeletClientCert,
		"--kubelet-client-key="+KubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		"--proxy-client-cert-file="+FrontProxyClientCert,
		"--proxy-client-key-file="+FrontProxyClientKey,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-client-ca-file="+FrontProxyCACert,
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--secure-port="+strconv.Itoa(APIServerPort),
		// Projected tokens expire when they say (an hour by default;
		// kubelets refresh them), not a year later.
		"--service-account-extend-token-expiration=false",
		"--service-account-issuer="+s.ServiceAccountIssuer(),
		"--service-account-key-file="+ServiceAccountPub,
		"--service-account-signing-key-file="+ServiceAccountKey,
		"--service-cluster-ip-range="+s.ServiceCIDR,
		// On SIGTERM: /readyz turns red, new requests get 429 with
		// Retry-After, in-flight ones drain, then the listener closes
		// within 2 s. Without it the HTTP server waits up to the request
		// timeout (60 s) for its open connections, so every restart (an
		// upgrade step, a changed flag) took a minute. tricenter withdraws
		// the API VIP from the server before it restarts the unit.
		"--shutdown-send-retry-after=true",
		"--tls-cert-file="+APIServerCert,
	)
	flags = append(flags, tlsFlags()...)
	return append(flags, "--tls-private-key-file="+APIServerKey)
}

// ControllerManagerFlags are kube-controller-manager's flags. Pod CIDRs
// come from tricenter's IPAM and are set on each Node by the node
// component, so the controller-manager allocates none. No profiling; TLS
// as kube-apiserver's.
func ControllerManagerFlags(s Settings) []string {
	flags := []string{
		"--allocate-node-cidrs=false",
		"--authentication-kubeconfig=" + ControllerManagerConf,
		"--authorization-kubeconfig=" + ControllerManagerConf,
		"--bind-address=127.0.0.1",
		"--client-ca-file=" + CACert,
		"--cluster-name=" + s.ClusterName,
		// One certificate, the key's: CACert holds two while the CA is
		// rotated, and the CSR signer refuses a bundle.
		"--cluster-signing-cert-file=" + CASignerCert,
		"--cluster-signing-key-file=" + CAKey,
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--kubeconfig=" + ControllerManagerConf,
		"--leader-elect=true",
		"--profiling=false",
		"--requestheader-client-ca-file=" + FrontProxyCACert,
		"--root-ca-file=" + CACert,
		"--secure-port=" + strconv.Itoa(ControllerManagerPort),
		"--service-account-private-key-file=" + ServiceAccountKey,
		"--service-cluster-ip-range=" + s.ServiceCIDR,
	}
	return append(append(flags, tlsFlags()...), "--use-service-account-credentials=true")
}

// SchedulerFlags are kube-scheduler's flags. --profiling is deprecated
// for kube-scheduler (in favour of its configuration file, which tricenter
// does not write) but still honoured without --config.
func SchedulerFlags() []string {
	return append([]string{
		"--authentication-kubeconfig=" + SchedulerConf,
		"--authorization-kubeconfig=" + SchedulerConf,
		"--bind-address=127.0.0.1",
		"--kubeconfig=" + SchedulerConf,
		"--leader-elect=true",
		"--profiling=false",
		"--secure-port=" + strconv.Itoa(SchedulerPort),
	}, tlsFlags()...)
}

// Flags returns a component's flags on the server at address.
func Flags(component string, s Settings, address string) ([]string, error) {
	switch component {
	case APIServer:
		return APIServerFlags(s, address), nil
	case ControllerManager:
		return ControllerManagerFlags(s), nil
	case Scheduler:
		return SchedulerFlags(), nil
	}
	return nil, fmt.Errorf("unknown control-plane component %q", component)
}

var descriptions = map[string][2]string{
	APIServer:         {"Kubernetes API server", "kube-apiserver"},
	ControllerManager: {"Kubernetes controller manager", "kube-controller-manager"},
	Scheduler:         {"Kubernetes scheduler", "kube-scheduler"},
}

// RenderUnit renders a component's systemd unit with its flags on the
// ExecStart line, so a changed flag is a changed unit.
func RenderUnit(component string, flags []string) ([]byte, error) {
	d, ok := descriptions[component]
	if !ok {
		return nil, fmt.Errorf("unknown control-plane component %q", component)
	}
	for _, f := range flags {
		// Flags are passed verbatim: systemd would split, expand or
		// unescape these.
		if f == "" || strings.ContainsAny(f, " \t\n\"'\\$%;") {
			return nil, fmt.Errorf("%s flag %q is empty or holds a character systemd would interpret", component, f)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Managed by tricenter
[Unit]
Description=%s (tricenter)
Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/%s/
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=%s/%s`, d[0], d[1], BinDir, component)
	for _, f := range flags {
		b.WriteString(" \\\n  " + f)
	}
	b.WriteString(`
Restart=always
RestartSec=5s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`)
	return b.Bytes(), nil
}

// EtcdServersFor is the --etcd-servers list of the apiserver on address.
// On a server that is itself an etcd member (stacked, as kubeadm does) it is
// that member alone: the apiserver is ready exactly when its local member is
// healthy and in quorum, and a lost center never leaves it waiting on dead
// endpoints (the etcd client spreads requests over every endpoint it is
// given, and connections to a server that died silently hang until the
// keepalive gives up: on the lab that kept every surviving apiserver
// unready, and the API VIP dark, for the whole outage of a center). The
// BGP agent withdraws the VIP from a server whose apiserver is not ready, so
// the VIP is served by the servers whose members are healthy. A
// control-plane server without etcd gets every member.
func EtcdServersFor(s Settings, address string) []string {
	local := etcd.ClientURL(address)
	for _, u := range s.EtcdServers {
		if u == local {
			return []string{local}
		}
	}
	return s.EtcdServers
}
