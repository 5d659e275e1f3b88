package controlplane

import (
	"context"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// certificates ensures the control-plane PKI in the store: CAs and leaves
// are created on first use and kept while they match (the apiserver's
// serving certificate is reissued when a control-plane server, the VIP or
// the service IP changes). Like the etcd PKI it is ensured in a dry run
// too, so the plan compares the files hosts would get.
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
	r.mu.Lock()
	r.pki = cp
	r.mu.Unlock()
	return nil
}
