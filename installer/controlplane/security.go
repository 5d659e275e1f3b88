package controlplane

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Audit log rotation, at least what CIS Kubernetes Benchmark 1.2.17–1.2.19
// ask: 30 days, 10 files of 100 MB (at most about 1.1 GB per server).
const (
	AuditLogMaxAgeDays = 30
	AuditLogMaxBackups = 10
	AuditLogMaxSizeMB  = 100
)

// TLSMinVersion is the oldest TLS version the control plane serves.
const TLSMinVersion = "VersionTLS12"

// TLSCipherSuites are the TLS 1.2 cipher suites the control plane serves:
// ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only (no CBC, no
// RSA key exchange, no SHA-1 MAC). TLS 1.3 suites are not configurable in
// Go and are all AEAD. kube-apiserver's certificate is ECDSA; the RSA
// variants serve kube-controller-manager and kube-scheduler, which make
// themselves a self-signed RSA certificate (their TLS 1.2 clients would
// find no common suite without them).
var TLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// tlsFlags are the TLS flags every control-plane component serves with.
func tlsFlags() []string {
	return []string{
		"--tls-cipher-suites=" + strings.Join(TLSCipherSuites, ","),
		"--tls-min-version=" + TLSMinVersion,
	}
}

// AnonymousPaths are the only paths anonymous requests may reach (and
// system:public-info-viewer lets them read): health endpoints for load
// balancers and the BGP agents' API VIP check. Everything else, /version
// and discovery included, needs credentials.
var AnonymousPaths = []string{"/livez", "/readyz", "/healthz"}

// RenderAuthenticationConfig renders the AuthenticationConfiguration
// (apiserver.config.k8s.io/v1, accepted by Kubernetes 1.34 and later: both
// supported releases) that enables anonymous requests for AnonymousPaths
// only. kube-apiserver refuses --anonymous-auth next to it.
func RenderAuthenticationConfig() ([]byte, error) {
	type condition struct {
		Path string `json:"path"`
	}
	type anonymous struct {
		Enabled    bool        `json:"enabled"`
		Conditions []condition `json:"conditions"`
	}
	c := struct {
		APIVersion string    `json:"apiVersion"`
		Kind       string    `json:"kind"`
		Anonymous  anonymous `json:"anonymous"`
	}{APIVersion: "apiserver.config.k8s.io/v1", Kind: "AuthenticationConfiguration", Anonymous: anonymous{Enabled: true}}
	for _, p := range AnonymousPaths {
		c.Anonymous.Conditions = append(c.Anonymous.Conditions, condition{Path: p})
	}
	return managedYAML(c)
}

// PodSecurityFor is the inventory's spec.kubernetes.podSecurity with its
// defaults (inventory.PodSecurity.SetDefaults) filled in.
func PodSecurityFor(c *inventory.Cluster) inventory.PodSecurity {
	p := c.Spec.Kubernetes.PodSecurity
	p.ExemptNamespaces = slices.Clone(p.ExemptNamespaces)
	p.SetDefaults()
	return p
}

// RenderAdmissionConfig renders the AdmissionConfiguration
// (apiserver.config.k8s.io/v1) holding the PodSecurity plugin's
// PodSecurityConfiguration (pod-security.admission.config.k8s.io/v1): the
// cluster default levels, at the latest version of the standards, and the
// exempt namespaces. A namespace's own pod-security.kubernetes.io labels
// override the defaults.
func RenderAdmissionConfig(p inventory.PodSecurity) ([]byte, error) {
	for _, l := range []string{p.Enforce, p.Warn, p.Audit} {
		switch l {
		case inventory.PodSecurityPrivileged, inventory.PodSecurityBaseline, inventory.PodSecurityRestricted:
		default:
			return nil, fmt.Errorf("pod security level %q is not privileged, baseline or restricted", l)
		}
	}
	type defaults struct {
		Enforce        string `json:"enforce"`
		EnforceVersion string `json:"enforce-version"`
		Audit          string `json:"audit"`
		AuditVersion   string `json:"audit-version"`
		Warn           string `json:"warn"`
		WarnVersion    string `json:"warn-version"`
	}
	type exemptions struct {
		Usernames      []string `json:"usernames"`
		RuntimeClasses []string `json:"runtimeClasses"`
		Namespaces     []string `json:"namespaces"`
	}
	type podSecurity struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Defaults   defaults   `json:"defaults"`
		Exemptions exemptions `json:"exemptions"`
	}
	type plugin struct {
		Name          string      `json:"name"`
		Configuration podSecurity `json:"configuration"`
	}
	ns := slices.Clone(p.ExemptNamespaces)
	slices.Sort(ns)
	ns = slices.Compact(ns)
	if ns == nil {
		ns = []string{}
	}
	c := struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Plugins    []plugin `json:"plugins"`
	}{
		APIVersion: "apiserver.config.k8s.io/v1", Kind: "AdmissionConfiguration",
		Plugins: []plugin{{Name: "PodSecurity", Configuration: podSecurity{
			APIVersion: "pod-security.admission.config.k8s.io/v1", Kind: "PodSecurityConfiguration",
			Defaults: defaults{Enforce: p.Enforce, EnforceVersion: "latest", Audit: p.Audit, AuditVersion: "latest",
				Warn: p.Warn, WarnVersion: "latest"},
			Exemptions: exemptions{Usernames: []string{}, RuntimeClasses: []string{}, Namespaces: ns},
		}}},
	}
	return managedYAML(c)
}

// The audit policy, as audit.k8s.io/v1 spells it (the fields tricenter
// writes).
type auditPolicy struct {
	APIVersion  string      `json:"apiVersion"`
	Kind        string      `json:"kind"`
	OmitStages  []string    `json:"omitStages,omitempty"`
	Rules       []auditRule `json:"rules"`
	OmitManaged bool        `json:"omitManagedFields,omitempty"`
}

type auditRule struct {
	Level           string       `json:"level"`
	Users           []string     `json:"users,omitempty"`
	UserGroups      []string     `json:"userGroups,omitempty"`
	Verbs           []string     `json:"verbs,omitempty"`
	Resources       []auditGroup `json:"resources,omitempty"`
	Namespaces      []string     `json:"namespaces,omitempty"`
	NonResourceURLs []string     `json:"nonResourceURLs,omitempty"`
}

type auditGroup struct {
	Group     string   `json:"group"`
	Resources []string `json:"resources,omitempty"`
}

// Audit levels.
const (
	auditNone            = "None"
	auditMetadata        = "Metadata"
	auditRequest         = "Request"
	auditRequestResponse = "RequestResponse"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}
)

// auditRules are the audit policy's rules; the first that matches a
// request decides its level:
//
//  1. None for the health endpoints and /version (polled every second by
//     the BGP agents and the gates) and for the system's own high-rate
//     traffic: kube-proxy's and the kubelets' watches of what they serve,
//     lease heartbeats and leader elections, and reads and writes of
//     Events by anyone (an Event is a record itself; deleting one is still
//     logged).
//  2. Metadata for what holds secrets, so no body is ever logged, whatever
//     the rules after it say: Secrets, ConfigMaps, service-account tokens
//     (TokenRequest) and token reviews.
//  3. RequestResponse for changes to RBAC (roles, cluster roles and their
//     bindings): who granted what, with the whole object.
//  4. Request for exec, attach and port-forward into pods (the command is
//     in the request).
//  5. Metadata for everything else: who did what to which object, when,
//     from where, and the answer's code.
//
// The RequestReceived stage is never logged (every request has a
// ResponseComplete or Panic event; long-running ones a ResponseStarted).
func auditRules() []auditRule {
	return []auditRule{
		{Level: auditNone, NonResourceURLs: []string{"/healthz*", "/livez*", "/readyz*", "/version", "/version/"}},
		{Level: auditNone, Users: []string{"system:kube-proxy"}, Verbs: []string{"watch"},
			Resources: []auditGroup{{Group: "", Resources: []string{"endpoints", "services", "services/status", "nodes"}},
				{Group: "discovery.k8s.io", Resources: []string{"endpointslices"}}}},
		{Level: auditNone, UserGroups: []string{"system:nodes"}, Verbs: readVerbs,
			Resources: []auditGroup{{Group: "", Resources: []string{"nodes", "nodes/status", "services", "endpoints"}},
				{Group: "discovery.k8s.io", Resources: []string{"endpointslices"}}}},
		{Level: auditNone, UserGroups: []string{"system:nodes"}, Verbs: []string{"get", "update"},
			Namespaces: []string{"kube-node-lease"},
			Resources:  []auditGroup{{Group: "coordination.k8s.io", Resources: []string{"leases"}}}},
		{Level: auditNone,
			Users: []string{"system:apiserver", "system:kube-controller-manager", "system:kube-scheduler"},
			Verbs: []string{"get", "update", "watch"}, Namespaces: []string{"kube-system"},
			Resources: []auditGroup{{Group: "coordination.k8s.io", Resources: []string{"leases"}}}},
		{Level: auditNone, Verbs: []string{"create", "update", "patch", "get", "list", "watch"},
			Resources: []auditGroup{{Group: "", Resources: []string{"events"}}, {Group: "events.k8s.io", Resources: []string{"events"}}}},
		{Level: auditMetadata, Resources: []auditGroup{
			{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
			{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
		}},
		{Level: auditRequestResponse, Verbs: writeVerbs, Resources: []auditGroup{{Group: "rbac.authorization.k8s.io",
			Resources: []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"}}}},
		{Level: auditRequest, Resources: []auditGroup{{Group: "",
			Resources: []string{"pods/exec", "pods/attach", "pods/portforward"}}}},
		{Level: auditMetadata},
	}
}

// RenderAuditPolicy renders the audit policy (audit.k8s.io/v1, see
// auditRules).
func RenderAuditPolicy() ([]byte, error) {
	return managedYAML(auditPolicy{APIVersion: "audit.k8s.io/v1", Kind: "Policy",
		OmitStages: []string{"RequestReceived"}, Rules: auditRules(), OmitManaged: true})
}

// auditFlags are kube-apiserver's audit log flags.
func auditFlags() []string {
	return []string{
		"--audit-log-maxage=" + strconv.Itoa(AuditLogMaxAgeDays),
		"--audit-log-maxbackup=" + strconv.Itoa(AuditLogMaxBackups),
		"--audit-log-maxsize=" + strconv.Itoa(AuditLogMaxSizeMB),
		"--audit-log-path=" + AuditLog,
		"--audit-policy-file=" + AuditPolicy,
	}
}

func managedYAML(v any) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Managed by tricenter\n"), b...), nil
}
