package state

import (
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// pkiPrefix is where the PKI sits in a state: the pki/ directory, and
// the "pki/" keys of a snapshot.
const pkiPrefix = "pki/"

// Mem is one cluster's engine state in memory: the files of a state
// directory keyed as Snapshot keys them ("pki/etcd/ca.crt", "prior.json"),
// nothing on disk. The Terraform provider builds it from Terraform state
// and puts Snapshot back. It has no lock of its own (Terraform's state
// lock serialises the runs of one state; the engine's cluster lease in
// etcd is unchanged); it is safe for concurrent use.
type Mem struct {
	pki   *pki.MemFiles
	cache string

	mu sync.Mutex
	// other holds every file outside pki/ (prior.json, and whatever else
	// an imported state directory held, kept as it was).
	other map[string]string
}

// NewMem returns a state holding files (as Snapshot returns them; copied)
// whose ArtifactCache is artifactCache (a directory: artifacts are a
// cache, not secrets). Keys must be clean relative paths outside
// artifacts/ and snapshots/.
func NewMem(files map[string]string, artifactCache string) (*Mem, error) {
	pf := map[string][]byte{}
	other := map[string]string{}
	for name, content := range files {
		if err := checkRel(name); err != nil {
			return nil, fmt.Errorf("state file %q: %w", name, err)
		}
		if rest, ok := strings.CutPrefix(name, pkiPrefix); ok {
			pf[rest] = []byte(content)
			continue
		}
		other[name] = content
	}
	mf, err := pki.NewMemFiles(pf)
	if err != nil {
		return nil, err
	}
	mf.Prefix = pkiPrefix
	return &Mem{pki: mf, cache: artifactCache, other: other}, nil
}

// PKI is the cluster's certificate store, in memory.
func (m *Mem) PKI() *pki.Store { return &pki.Store{Files: m.pki} }

// Prior reads what the last apply recorded; nil (and no error) on a first
// run.
func (m *Mem) Prior() (*inventory.Prior, error) {
	m.mu.Lock()
	s, ok := m.other[PriorFile]
	m.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return parsePrior([]byte(s), PriorFile+" in the engine state")
}

// SavePrior records p (as Dir writes it, so a snapshot reads the same).
func (m *Mem) SavePrior(p *inventory.Prior) error {
	b, err := encodePrior(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.other[PriorFile] = string(b)
	return nil
}

// ArtifactCache is the directory NewMem was given.
func (m *Mem) ArtifactCache() string { return m.cache }

// Snapshot returns every file, keyed as the state Snapshot of a directory
// holding the same state would key them.
func (m *Mem) Snapshot() map[string]string {
	m.mu.Lock()
	out := maps.Clone(m.other)
	m.mu.Unlock()
	for name, b := range m.pki.Snapshot() {
		out[pkiPrefix+name] = string(b)
	}
	return out
}
