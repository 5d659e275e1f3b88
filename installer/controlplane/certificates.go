package controlplane

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// certificates ensures the control-plane PKI and the Secrets encryption
// keyring in the store: CAs, leaves and keys are created on first use and
// kept while they match (the apiserver's serving certificate is reissued
// when a control-plane server, the VIP or the service IP changes). Like
// the etcd PKI it is ensured in a dry run too, so the plan compares the
// files hosts would get.
func (r *run) certificates(context.Context) error {
	req := pki.ControlPlaneRequest{
		APIVIP:        r.o.IPs.APIVIP,
		ServiceIP:     r.o.IPs.KubernetesServiceIP,
		ClusterDomain: r.settings.ClusterDomain,
	}
	for _, m := range r.servers {
		req.Servers = append(req.Servers, pki.ControlPlaneServer{Name: m.Name, Address: m.Address})
	}
	cp, err := r.o.PKI.EnsureControlPlane(req)
	if err != nil {
		return fmt.Errorf("control-plane certificates: %w", err)
	}
	for _, c := range cp.Changed {
		r.log.Info("Issued control-plane certificate", "name", c)
	}
	ring, err := r.keyring()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.pki = cp
	r.ring = ring
	r.mu.Unlock()
	return nil
}

// keyring ensures the Secrets encryption keyring in the store
// (encryption.Ensure) against what the servers hold, as preflight read it:
// generated on first use, adopted from the servers when the state lacks
// it, refused when a server holds a key the state does not. Turning
// ConfigMap encryption off while a server encrypts ConfigMaps is refused
// too: the ConfigMaps written since would become unreadable.
func (r *run) keyring() (*encryption.Keyring, error) {
	onHosts := map[string]*encryption.Keyring{}
	var configMaps []string
	r.mu.Lock()
	for name, st := range r.hosts {
		if st.encryption == nil {
			continue
		}
		onHosts[name] = st.encryption.Keyring
		if slices.Contains(st.encryption.Resources, encryption.ConfigMaps) {
			configMaps = append(configMaps, name)
		}
	}
	r.mu.Unlock()
	if len(configMaps) > 0 && !r.settings.EncryptConfigMaps {
		slices.Sort(configMaps)
		return nil, fmt.Errorf("%s on %s encrypts ConfigMaps in etcd: turning that off would leave the ConfigMaps "+
			"written since unreadable; keep ConfigMap encryption on", EncryptionConfig, strings.Join(configMaps, ", "))
	}
	ring, outcome, err := encryption.Ensure(r.o.PKI, onHosts)
	if err != nil {
		return nil, fmt.Errorf("encryption keys of Secrets: %w", err)
	}
	switch outcome {
	case encryption.Created:
		r.log.Info("Generated the Secrets encryption key: Secrets written from now on are encrypted in etcd, older ones when next written",
			"keys", ring.String(), "state", encryption.Where(r.o.PKI))
	case encryption.Adopted:
		r.log.Warn("The state had no Secrets encryption keys: took the servers' into it", "keys", ring.String(),
			"state", encryption.Where(r.o.PKI))
	}
	return ring, nil
}
