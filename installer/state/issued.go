package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// The log of the user certificates the engine issued (tricenter kubeconfig
// --user, the provider's tricenter_kubeconfig with user):
//
//	DIR/<cluster>/issued-certificates.jsonl   one JSON object per line, oldest first
//
// It is append-only: nothing in the engine rewrites or drops a record. It
// holds what identifies a certificate (serial, subject, groups, validity,
// fingerprint) and who asked for it, never a key nor the certificate
// itself.

// IssuedFile is the name of the issued-certificate log in a state
// (directory, snapshot, or the provider's blob).
const IssuedFile = "issued-certificates.jsonl"

// IssuedCert is one record of the issued-certificate log.
type IssuedCert struct {
	// Serial is the certificate's serial number in upper-case hex, as
	// `openssl x509 -noout -serial` prints it.
	Serial string `json:"serial"`
	// Subject is the certificate's common name: the Kubernetes user.
	Subject string `json:"subject"`
	// Groups are its organizations: the Kubernetes groups.
	Groups []string `json:"groups,omitempty"`
	// NotBefore and NotAfter bound its validity.
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// SHA256 is the hex SHA-256 of the certificate (DER).
	SHA256 string `json:"sha256"`
	// Overrides are the refusals the request lifted
	// ("allow-system-groups", "allow-long-ttl").
	Overrides []string `json:"overrides,omitempty"`
	// RequestedBy is who asked for it.
	RequestedBy Requester `json:"requestedBy"`
	// IssuedAt is when it was issued.
	IssuedAt time.Time `json:"issuedAt"`
}

// Requester is the process that asked for a certificate.
type Requester struct {
	// User is the operating-system user of the process; SudoUser the
	// user who ran it through sudo, when it was.
	User     string `json:"user"`
	SudoUser string `json:"sudoUser,omitempty"`
	// Host is the host name it ran on, PID its process id.
	Host string `json:"host"`
	PID  int    `json:"pid,omitempty"`
	// Tool and Command name the program and its command
	// ("tricenter", "kubeconfig").
	Tool    string `json:"tool,omitempty"`
	Command string `json:"command,omitempty"`
}

func (r IssuedCert) check() error {
	switch {
	case r.Serial == "":
		return errors.New("issued-certificate record without a serial")
	case r.Subject == "":
		return fmt.Errorf("issued-certificate record %s without a subject", r.Serial)
	case r.NotAfter.IsZero():
		return fmt.Errorf("issued-certificate record %s without an expiry", r.Serial)
	}
	return nil
}

// appendIssued is log with r added as its last line (a log whose last
// line lost its newline gets one first).
func appendIssued(log []byte, r IssuedCert) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	line, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding the issued-certificate record %s: %w", r.Serial, err)
	}
	out := make([]byte, 0, len(log)+len(line)+2)
	out = append(out, log...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, line...)
	return append(out, '\n'), nil
}

// parseIssued reads a log, oldest record first; where names it in errors.
func parseIssued(b []byte, where string) ([]IssuedCert, error) {
	var out []IssuedCert
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r IssuedCert
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("%s line %d: %w: the records before it are intact; fix or remove that line", where, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// IssuedPath is where the issued-certificate log is kept.
func (d *Dir) IssuedPath() string { return filepath.Join(d.Path, IssuedFile) }

// AppendIssued adds r to the issued-certificate log: the log is read, r
// appended and the whole written back atomically (temporary file, fsync,
// rename), so a failed or killed write leaves the log as it was. Appends
// of concurrent processes are serialised by an flock on the state
// directory (not the writer lock: issuing does not wait for an apply).
func (d *Dir) AppendIssued(r IssuedCert) error {
	return d.appendIssued(r, fsutil.WriteFileAtomic)
}

// appendIssued is AppendIssued writing through write.
func (d *Dir) appendIssued(r IssuedCert, write func(string, []byte, os.FileMode) error) error {
	dir, err := os.Open(d.Path)
	if err != nil {
		return fmt.Errorf("opening the state directory for the issued-certificate log: %w", err)
	}
	defer dir.Close()
	if err := syscall.Flock(int(dir.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s for the issued-certificate log: %w", d.Path, err)
	}
	defer func() { _ = syscall.Flock(int(dir.Fd()), syscall.LOCK_UN) }()
	old, err := os.ReadFile(d.IssuedPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading the issued-certificate log: %w", err)
	}
	b, err := appendIssued(old, r)
	if err != nil {
		return err
	}
	if err := write(d.IssuedPath(), b, 0o600); err != nil {
		return fmt.Errorf("writing the issued-certificate log %s: %w", d.IssuedPath(), err)
	}
	return nil
}

// Issued reads the issued-certificate log, oldest first; none (and no
// error) when nothing was issued.
func (d *Dir) Issued() ([]IssuedCert, error) {
	b, err := os.ReadFile(d.IssuedPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the issued-certificate log: %w", err)
	}
	return parseIssued(b, d.IssuedPath())
}

// AppendIssued adds r to the issued-certificate log kept with the other
// files (the provider's blob carries it as IssuedFile).
func (m *Mem) AppendIssued(r IssuedCert) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := appendIssued([]byte(m.other[IssuedFile]), r)
	if err != nil {
		return err
	}
	m.other[IssuedFile] = string(b)
	return nil
}

// Issued reads the issued-certificate log, oldest first.
func (m *Mem) Issued() ([]IssuedCert, error) {
	m.mu.Lock()
	s := m.other[IssuedFile]
	m.mu.Unlock()
	return parseIssued([]byte(s), IssuedFile+" in the engine state")
}
