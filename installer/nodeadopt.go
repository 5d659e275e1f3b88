package installer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// adoptQueryTimeout bounds reading one server's node certificates.
const adoptQueryTimeout = 30 * time.Second

// AdoptNodeCertificates reads the kubelet's certificates from a server
// whose state does not hold them (a tricenter_node just imported, a state
// that lost them) and keeps in the state those this state's Kubernetes CA
// signed, so the next apply leaves them (and the kubelet) as they are
// instead of issuing new ones. It returns the certificates adopted; one
// that is missing on the server, foreign or broken is not adopted (the
// apply issues it) and is logged. It changes nothing on the server.
func (e *Engine) AdoptNodeCertificates(ctx context.Context, name string) ([]string, error) {
	if _, ok := e.cfg.Cluster.Host(name); !ok {
		return nil, fmt.Errorf("server %s is not in the inventory", name)
	}
	store := e.PKIStore()
	want := map[string]string{} // leaf file → what it is
	for file, what := range map[string]string{
		pki.KubeletClientFile(name):  "kubelet client certificate",
		pki.KubeletServingFile(name): "kubelet serving certificate",
	} {
		if _, err := store.Load(pki.KubernetesCA, file); errors.Is(err, pki.ErrNotFound) {
			want[file] = what
		} else if err != nil {
			return nil, err
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	m := e.ObserveManager()
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: []string{name}})
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, adoptQueryTimeout)
	defer cancel()
	paths := []string{node.KubeletCert, node.KubeletKey, node.KubeletKubeconfig}
	out, err := hosts[0].Query(qctx, catFiles(paths))
	if err != nil {
		return nil, fmt.Errorf("reading the kubelet's certificates on %s: %w", name, err)
	}
	files := splitCatFiles(out)
	pairs := map[string][2][]byte{
		pki.KubeletServingFile(name): {files[node.KubeletCert], files[node.KubeletKey]},
	}
	if kc := files[node.KubeletKubeconfig]; len(kc) > 0 {
		if cert, key, err := kubeconfigClient(kc); err == nil {
			pairs[pki.KubeletClientFile(name)] = [2][]byte{cert, key}
		} else {
			e.log.Info("Not adopting the kubelet client certificate", "server", name, "reason", err.Error())
		}
	}
	var adopted []string
	for _, file := range slices.Sorted(maps.Keys(want)) {
		p, ok := pairs[file]
		if !ok || len(p[0]) == 0 || len(p[1]) == 0 {
			e.log.Info("Not adopting the "+want[file], "server", name, "reason", "not on the server")
			continue
		}
		ok, err := store.Adopt(pki.KubernetesCA, file, p[0], p[1])
		switch {
		case err != nil:
			e.log.Info("Not adopting the "+want[file], "server", name, "reason", err.Error())
		case ok:
			e.log.Info("Adopted the "+want[file]+" the server holds", "server", name)
			adopted = append(adopted, pki.KubernetesCA+"/"+file)
		}
	}
	return adopted, nil
}

// catFiles is a read-only command printing each existing file after a
// marker line (splitCatFiles reads it back).
func catFiles(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "if [ -f %[1]s ]; then echo '==> %[1]s'; cat %[1]s; echo; fi; ", p)
	}
	b.WriteString("true")
	return b.String()
}

// splitCatFiles reads catFiles' output into contents by path.
func splitCatFiles(out string) map[string][]byte {
	files := map[string][]byte{}
	var cur string
	var buf strings.Builder
	flush := func() {
		if cur != "" {
			files[cur] = []byte(strings.TrimSuffix(buf.String(), "\n"))
		}
		buf.Reset()
	}
	for _, l := range strings.SplitAfter(out, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimRight(l, "\n"), "==> "); ok {
			flush()
			cur = p
			continue
		}
		buf.WriteString(l)
	}
	flush()
	return files
}

// kubeconfigClient returns the client certificate and key of a
// kubeconfig's current context.
func kubeconfigClient(b []byte) (cert, key []byte, err error) {
	cfg, err := clientcmd.Load(b)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the kubelet's kubeconfig: %w", err)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return nil, nil, errors.New("the kubelet's kubeconfig has no current context")
	}
	ai, ok := cfg.AuthInfos[ctx.AuthInfo]
	if !ok || len(ai.ClientCertificateData) == 0 || len(ai.ClientKeyData) == 0 {
		return nil, nil, errors.New("the kubelet's kubeconfig embeds no client certificate")
	}
	return ai.ClientCertificateData, ai.ClientKeyData, nil
}
