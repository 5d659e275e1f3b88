// Package kubeconfig writes the kubeconfig files tricenter puts on hosts and
// hands to users (admin, kubelet, kube-proxy, controller-manager,
// scheduler) with client-go's clientcmd, never by string templates.
package kubeconfig

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Config describes one kubeconfig with a client certificate.
type Config struct {
	// Cluster and User name the entries (the context is "User@Cluster").
	Cluster string
	User    string
	// Server is the API URL, e.g. https://198.19.120.10:6443.
	Server string
	// CA is the PEM bundle that verifies the API server.
	CA []byte
	// CertPEM and KeyPEM are the client certificate and its key.
	CertPEM, KeyPEM []byte
}

// API returns the clientcmd form of c.
func (c Config) API() (*clientcmdapi.Config, error) {
	switch {
	case c.Cluster == "" || c.User == "":
		return nil, errors.New("kubeconfig: cluster and user names are required")
	case c.Server == "":
		return nil, fmt.Errorf("kubeconfig for %s: no API server URL", c.User)
	case len(c.CA) == 0:
		return nil, fmt.Errorf("kubeconfig for %s: no CA bundle", c.User)
	case len(c.CertPEM) == 0 || len(c.KeyPEM) == 0:
		return nil, fmt.Errorf("kubeconfig for %s: no client certificate", c.User)
	}
	ctx := c.User + "@" + c.Cluster
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Cluster] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CA}
	cfg.AuthInfos[c.User] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertPEM, ClientKeyData: c.KeyPEM}
	cfg.Contexts[ctx] = &clientcmdapi.Context{Cluster: c.Cluster, AuthInfo: c.User}
	cfg.CurrentContext = ctx
	return cfg, nil
}

// Render serialises c as a kubeconfig file (YAML). The result holds a
// private key: write it 0600 and never log it.
func Render(c Config) ([]byte, error) {
	cfg, err := c.API()
	if err != nil {
		return nil, err
	}
	return clientcmd.Write(*cfg)
}

// REST parses a kubeconfig into a client-go REST config.
func REST(kubeconfig []byte) (*rest.Config, error) {
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig: %w", err)
	}
	return rc, nil
}
