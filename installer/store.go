package installer

import (
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Store keeps what must survive between runs: the certificate
// authorities and leaves, and what the last apply allocated (pod CIDRs,
// etcd members) so nothing is renumbered. The CLI's is a state directory
// (state.Dir, with its own lock: StoreLocker); the Terraform provider's
// is in memory (state.Mem, filled from Terraform state and snapshotted
// back, nothing on disk).
type Store interface {
	// PKI is the certificate store.
	PKI() *pki.Store
	// Prior is what the last apply recorded; nil on a first run.
	Prior() (*inventory.Prior, error)
	// SavePrior records p (atomically).
	SavePrior(p *inventory.Prior) error
	// ArtifactCache is a local directory for artifacts fetched from a
	// mirror.
	ArtifactCache() string
}

var (
	_ Store       = (*state.Dir)(nil)
	_ StoreLocker = (*state.Dir)(nil)
	_ Store       = (*state.Mem)(nil)
)
