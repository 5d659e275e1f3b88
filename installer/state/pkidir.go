package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// The PKI outside the engine state blob (tricenter_cluster.pki_dir): the
// engine state's pki/ files (the CAs and their keys, the service-account
// key, the encryption keyring, every leaf) live in a directory, laid out
// as the CLI's DIR/<cluster>/pki, and the blob holds PKIRefFile in their
// place: the directory and the sha256 of each file. Whoever decodes the
// blob (the provider's resources, `tricenter state restore`) reads the
// files back from the directory it names with InternalizePKI, and a
// missing or changed file is an error, never a new CA.

// PKIRefFile is the engine-state file that stands for a PKI kept in a
// directory.
const PKIRefFile = "pki-dir.json"

// PKIRef is the content of PKIRefFile.
type PKIRef struct {
	// Dir is the directory, as pki_dir gave it.
	Dir string `json:"dir"`
	// SHA256 maps each file's name under Dir ("etcd/ca.key") to the hex
	// sha256 of its content.
	SHA256 map[string]string `json:"sha256"`
}

// ExternalizePKI writes the pki/ files of files under dir (created 0700,
// files 0600, each written atomically) and returns files with them
// replaced by PKIRefFile. Files already under dir that files does not
// name are left alone (a tricenter_node's own certificates share the
// directory with its cluster's).
func ExternalizePKI(files map[string]string, dir string) (map[string]string, error) {
	if err := ensurePKIDir(dir); err != nil {
		return nil, err
	}
	ref := PKIRef{Dir: dir, SHA256: map[string]string{}}
	out := map[string]string{}
	for name, content := range files {
		rel, ok := strings.CutPrefix(name, "pki/")
		if !ok {
			if name != PKIRefFile {
				out[name] = content
			}
			continue
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, filepath.FromSlash(rel)), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("pki_dir %s: writing %s: %w", dir, rel, err)
		}
		ref.SHA256[rel] = fsutil.SHA256Hex([]byte(content))
	}
	b, err := json.Marshal(ref)
	if err != nil {
		return nil, err
	}
	out[PKIRefFile] = string(b)
	return out, nil
}

// ensurePKIDir creates dir 0700 (parents too), and refuses an existing
// directory others may read.
func ensurePKIDir(dir string) error {
	if dir == "" {
		return errors.New("pki_dir is empty: give a directory, or leave pki_dir out to keep the PKI in the state")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki_dir %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pki_dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("pki_dir %s is not a directory: name a directory (it is created 0700 when missing)", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("pki_dir %s is mode %04o: other users could read the cluster's keys; chmod 700 it, then apply again", dir, st.Mode().Perm())
	}
	return nil
}

// InternalizePKI returns files with a PKIRefFile replaced by the pki/
// files it names, read from its directory and checked against their
// sha256, and the directory ("" when files hold the PKI themselves). A
// missing directory or file, or one whose content changed, is an error
// that names the path and what to do.
func InternalizePKI(files map[string]string) (map[string]string, string, error) {
	raw, ok := files[PKIRefFile]
	if !ok {
		return files, "", nil
	}
	var ref PKIRef
	if err := json.Unmarshal([]byte(raw), &ref); err != nil || ref.Dir == "" {
		return nil, "", fmt.Errorf("%s in the engine state is unreadable (%w): restore the state from a backup", PKIRefFile, err)
	}
	if _, err := os.Stat(ref.Dir); err != nil {
		return nil, ref.Dir, fmt.Errorf("pki_dir %s: %w; the engine state says this cluster's PKI (%d files: its certificate authorities "+
			"and keys) is in that directory. Restore the directory from its backup (or mount it) where pki_dir says, then run "+
			"again: neither the provider nor the CLI ever creates new certificate authorities for an installed cluster", ref.Dir, unwrapPathError(err), len(ref.SHA256))
	}
	out := make(map[string]string, len(files)+len(ref.SHA256))
	for name, content := range files {
		if name != PKIRefFile {
			out[name] = content
		}
	}
	var missing, changed []string
	for rel, sum := range ref.SHA256 {
		p := filepath.Join(ref.Dir, filepath.FromSlash(rel))
		b, err := os.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, rel)
			continue
		case err != nil:
			return nil, ref.Dir, fmt.Errorf("pki_dir %s: reading %s: %w", ref.Dir, rel, err)
		case fsutil.SHA256Hex(b) != sum:
			changed = append(changed, rel)
			continue
		}
		out["pki/"+rel] = string(b)
	}
	sort.Strings(missing)
	sort.Strings(changed)
	switch {
	case len(missing) > 0:
		return nil, ref.Dir, fmt.Errorf("pki_dir %s lacks %s, which the engine state records: restore them from the directory's backup, "+
			"then run again (neither the provider nor the CLI ever issues a new certificate authority for an installed cluster)", ref.Dir, strings.Join(missing, ", "))
	case len(changed) > 0:
		return nil, ref.Dir, fmt.Errorf("pki_dir %s: %s changed since they were last written (sha256 differs from the engine state): "+
			"restore them from the directory's backup, then run again", ref.Dir, strings.Join(changed, ", "))
	}
	return out, ref.Dir, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
