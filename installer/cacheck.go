package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ErrCAMismatch is wrapped when the servers already trust certificate
// authorities other than the state's: applying would push new
// certificates the running cluster does not trust.
var ErrCAMismatch = errors.New("the servers trust other certificate authorities than this state's")

// HostCAFile is where a server keeps an authority's public half.
type HostCAFile struct {
	Path      string
	Authority string // pki.EtcdCA, pki.EtcdPeerCA, pki.KubernetesCA, pki.FrontProxyCA, pki.ServiceAccountAuthority
}

// HostCAFiles are every file through which a server trusts (or signs with)
// one of the cluster's authorities.
var HostCAFiles = []HostCAFile{
	{etcd.PKIDir + "/ca.crt", pki.EtcdCA},
	{etcd.PeerCAFile, pki.EtcdPeerCA},
	{controlplane.EtcdCACert, pki.EtcdCA},
	{controlplane.CACert, pki.KubernetesCA},
	{controlplane.CASignerCert, pki.KubernetesCA},
	{node.KubeletCA, pki.KubernetesCA},
	{controlplane.FrontProxyCACert, pki.FrontProxyCA},
	{controlplane.ServiceAccountPub, pki.ServiceAccountAuthority},
}

// caSeen is one authority file on one server.
type caSeen struct {
	Host, Path, Authority, Fingerprint string
}

// caQuery prints each authority file that exists, after a marker line.
func caQuery() string {
	var b strings.Builder
	for _, f := range HostCAFiles {
		fmt.Fprintf(&b, "if [ -f %[1]s ]; then echo '==> %[1]s'; cat %[1]s; fi; ", f.Path)
	}
	b.WriteString("true")
	return b.String()
}

// parseCAQuery reads caQuery's output into fingerprints by path.
func parseCAQuery(out string) (map[string]string, error) {
	fps := map[string]string{}
	var path string
	var buf bytes.Buffer
	flush := func() error {
		if path == "" {
			return nil
		}
		fp, err := pki.PublicKeyFingerprint(buf.Bytes())
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if bytes.Contains(buf.Bytes(), []byte("CERTIFICATE")) {
			c, err := pki.ParseCert(buf.Bytes())
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			fp = pki.Fingerprint(c)
		}
		fps[path] = fp
		return nil
	}
	for _, l := range strings.SplitAfter(out, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(l), "==> "); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			path = p
			buf.Reset()
			continue
		}
		buf.WriteString(l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return fps, nil
}

// CompareCAs checks what the servers hold against the state's fingerprints
// (pki.Store.Fingerprints): a server that trusts an authority the state
// lacks, or another one than the state's, is a mismatch. The error names
// each authority, the fingerprints found with their servers and files, the
// state's, and the remedy.
func CompareCAs(state map[string]string, seen []caSeen) error {
	bad := map[string]map[string][]string{} // authority → fingerprint → host:path
	for _, s := range seen {
		if want, ok := state[s.Authority]; ok && want == s.Fingerprint {
			continue
		}
		if bad[s.Authority] == nil {
			bad[s.Authority] = map[string][]string{}
		}
		bad[s.Authority][s.Fingerprint] = append(bad[s.Authority][s.Fingerprint], s.Host+":"+s.Path)
	}
	if len(bad) == 0 {
		return nil
	}
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(bad)) {
		want := "none (this state has no " + authorityName(a) + ")"
		if fp, ok := state[a]; ok {
			want = "sha256:" + fp
		}
		var found []string
		for _, fp := range slices.Sorted(maps.Keys(bad[a])) {
			where := bad[a][fp]
			sort.Strings(where)
			found = append(found, fmt.Sprintf("sha256:%s on %s", fp, strings.Join(where, ", ")))
		}
		parts = append(parts, fmt.Sprintf("%s: the state's is %s; the servers hold %s", authorityName(a), want, strings.Join(found, "; ")))
	}
	return fmt.Errorf("%w: %s. Nothing was written. If these servers belong to a running cluster, work with that "+
		"cluster's state: `tricenter state restore` (from the tricenter_cluster's state attribute) or `terraform import` "+
		"of the tricenter_cluster; if that cluster is gone, reset the servers first (`tricenter reset`)",
		ErrCAMismatch, strings.Join(parts, "; "))
}

func authorityName(a string) string {
	switch a {
	case pki.EtcdCA:
		return "etcd CA"
	case pki.EtcdPeerCA:
		return "etcd peer CA"
	case pki.KubernetesCA:
		return "Kubernetes CA"
	case pki.FrontProxyCA:
		return "front-proxy CA"
	case pki.ServiceAccountAuthority:
		return "service-account key"
	}
	return a
}

// caHosts are the servers a run may write certificates to: the etcd
// members and control plane whenever those components run, the run's
// servers for the per-node components.
func (e *Engine) caHosts(comps []Component, o Options) []string {
	set := map[string]bool{}
	for _, c := range comps {
		switch c {
		case Etcd:
			for _, m := range e.Placement().Etcd.Members {
				set[m.Name] = true
			}
			if e.prior != nil {
				for _, n := range e.prior.EtcdMembers {
					if _, ok := e.cfg.Cluster.Host(n); ok {
						set[n] = true
					}
				}
			}
		case ControlPlane:
			for _, m := range e.Placement().ControlPlane {
				set[m.Name] = true
			}
		default:
			for _, h := range e.cfg.Cluster.Hosts() {
				if len(o.Servers) == 0 || slices.Contains(o.Servers, h.Name) {
					set[h.Name] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// checkHostCAs reads, before any certificate is made or written, which
// authorities the run's servers already trust, and refuses when they are
// not the state's (ErrCAMismatch): a lost, fresh or foreign state never
// pushes new CAs to a running cluster. Servers that cannot be reached are
// not written to either; they are returned as warnings.
func (e *Engine) checkHostCAs(ctx context.Context, m *phase.Manager, comps []Component, o Options) ([]string, error) {
	state, err := e.cfg.Store.PKI().Fingerprints()
	if err != nil {
		return nil, err
	}
	// A CA rotation explains files that hold the old and the next CA
	// (acceptBundle).
	known, err := e.cfg.Store.PKI().KnownCAs()
	if err != nil {
		return nil, err
	}
	state = rotationState(state, known)
	names := e.caHosts(comps, o)
	if len(names) == 0 {
		return nil, nil
	}
	hosts, err := m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var seen []caSeen
	var warnings []string
	var errs []error
	cmd := caQuery()
	_ = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		out, err := h.Query(ctx, cmd)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: its certificate authorities were not checked (%v); nothing is written to it while it cannot be reached", h.Name, err))
			return nil
		}
		fps, err := parseCAQuery(out)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the certificate authorities on %s: %w", h.Name, err))
			return nil
		}
		bundles := parseCABundles(out)
		for _, f := range HostCAFiles {
			if fp, ok := fps[f.Path]; ok {
				fp = acceptBundle(state, known, f.Authority, fp, bundles[f.Path])
				seen = append(seen, caSeen{Host: h.Name, Path: f.Path, Authority: f.Authority, Fingerprint: fp})
			}
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return warnings, err
	}
	sort.Strings(warnings)
	if err := CompareCAs(state, seen); err != nil {
		return warnings, err
	}
	e.log.Debug("Servers trust the state's certificate authorities", "servers", len(hosts), "files", len(seen))
	return warnings, nil
}
