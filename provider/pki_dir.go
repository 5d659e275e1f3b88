package provider

import "github.com/tricenter/terraform-provider-tricenter/installer/state"

// The PKI outside Terraform state (tricenter_cluster.pki_dir) is encoded
// and decoded by installer/state (pkidir.go), which `tricenter state
// restore` shares: the state blob holds state.PKIRefFile (the directory
// and the sha256 of each file) in place of the pki/ files, and every
// resource that decodes the blob reads them back from that directory.

// pkiRefFile is the engine-state file that stands for a PKI kept in a
// directory.
const pkiRefFile = state.PKIRefFile

// externalizePKI is state.ExternalizePKI: the pki/ files written under
// dir, the files returned with their fingerprints in their place.
func externalizePKI(files map[string]string, dir string) (map[string]string, error) {
	return state.ExternalizePKI(files, dir)
}

// internalizePKI is state.InternalizePKI: the pki/ files read back from
// the directory the files name (a missing or changed one is an error),
// and that directory ("" when the files hold the PKI themselves).
func internalizePKI(files map[string]string) (map[string]string, string, error) {
	return state.InternalizePKI(files)
}
