// Package state keeps a cluster's engine state: the PKI and what the last
// apply recorded (inventory.Prior: pod CIDRs and etcd members) so
// allocations never move between runs. Dir is the CLI's state directory;
// Mem holds the same files in memory for the Terraform provider, which
// keeps them in Terraform state (as a blob: EncodeBlob, DecodeBlob).
//
//	DIR/<cluster>/pki/...      certificate authorities and leaves (installer/pki)
//	DIR/<cluster>/prior.json   inventory.Prior of the last successful apply
//	DIR/<cluster>/snapshots/   etcd snapshots (tricenter etcd snapshot)
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// EnvDir overrides the default state directory.
const EnvDir = "TRICENTER_STATE_DIR"

// DefaultDir is $TRICENTER_STATE_DIR, else $XDG_STATE_HOME/tricenter, else
// ~/.local/state/tricenter.
func DefaultDir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "tricenter")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".tricenter-state"
	}
	return filepath.Join(home, ".local", "state", "tricenter")
}

var clusterName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// Dir is one cluster's state.
type Dir struct {
	Path string
}

// Open returns the state of the named cluster under root, creating it
// (0700).
func Open(root, cluster string) (*Dir, error) {
	if !clusterName.MatchString(cluster) {
		return nil, fmt.Errorf("metadata.name %q cannot name a state directory: use letters, digits, '.', '_' and '-'", cluster)
	}
	p := filepath.Join(root, cluster)
	if err := os.MkdirAll(p, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	return &Dir{Path: p}, nil
}

// PKI is the cluster's certificate store.
func (d *Dir) PKI() *pki.Store {
	return &pki.Store{Files: pki.DirFiles{Path: filepath.Join(d.Path, "pki")}}
}

// Snapshots is where etcd snapshots go by default.
func (d *Dir) Snapshots() string { return filepath.Join(d.Path, "snapshots") }

func (d *Dir) priorPath() string { return filepath.Join(d.Path, PriorFile) }

// Prior reads what the last apply recorded; nil (and no error) on a first
// run.
func (d *Dir) Prior() (*inventory.Prior, error) {
	b, err := os.ReadFile(d.priorPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parsePrior(b, d.priorPath())
}

// SavePrior records p atomically.
func (d *Dir) SavePrior(p *inventory.Prior) error {
	b, err := encodePrior(p)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(d.priorPath(), b, 0o600)
}

// PriorFile is the name of the recorded allocations in a state (directory
// or snapshot).
const PriorFile = "prior.json"

func parsePrior(b []byte, where string) (*inventory.Prior, error) {
	var p inventory.Prior
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w: move it away to start over", where, err)
	}
	return &p, nil
}

func encodePrior(p *inventory.Prior) ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// RecordEtcd updates the recorded etcd members, keeping the rest.
func (d *Dir) RecordEtcd(members []inventory.Member) error {
	p, err := d.Prior()
	if err != nil {
		return err
	}
	if p == nil {
		p = &inventory.Prior{}
	}
	p.EtcdMembers = p.EtcdMembers[:0]
	for _, m := range members {
		p.EtcdMembers = append(p.EtcdMembers, m.Name)
	}
	return d.SavePrior(p)
}

// ArtifactCache is where artifacts fetched from a mirror are kept.
func (d *Dir) ArtifactCache() string { return filepath.Join(d.Path, "artifacts") }
