package ssh

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyPolicy says what to do with a host key nobody vouches for.
type HostKeyPolicy string

// Host key policies.
const (
	// Strict refuses unknown host keys (the default).
	Strict HostKeyPolicy = "strict"
	// AcceptNew trusts a host key seen for the first time and records it
	// (in the first known_hosts file and through Options.OnNewHostKey). A
	// changed key is still refused.
	AcceptNew HostKeyPolicy = "accept-new"
)

// ParseHostKeyPolicy reads "strict", "accept-new" or "" (strict).
func ParseHostKeyPolicy(s string) (HostKeyPolicy, error) {
	switch HostKeyPolicy(s) {
	case "", Strict:
		return Strict, nil
	case AcceptNew:
		return AcceptNew, nil
	}
	return "", fmt.Errorf("host key policy %q: use strict or accept-new", s)
}

// Pin is a parsed host key pin: a SHA256 fingerprint or a full public key.
type Pin struct {
	Fingerprint string
	Key         xssh.PublicKey // nil for a fingerprint-only pin
}

// ParsePin reads "SHA256:…" or an authorized_keys style line
// ("ssh-ed25519 AAAA… comment"). The empty string is no pin.
func ParsePin(s string) (*Pin, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "SHA256:") {
		if len(s) != len("SHA256:")+43 {
			return nil, fmt.Errorf("host key fingerprint %q is not a SHA256 fingerprint (SHA256: and 43 base64 characters, as ssh-keygen -lf prints)", s)
		}
		return &Pin{Fingerprint: s}, nil
	}
	k, _, _, _, err := xssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("host key %q is neither a SHA256:… fingerprint nor a public key line: %w", shorten(s, 40), err)
	}
	return &Pin{Fingerprint: xssh.FingerprintSHA256(k), Key: k}, nil
}

// hostKeys checks host keys against pins, known_hosts files (with
// @cert-authority and @revoked lines) and keys accepted during this run.
type hostKeys struct {
	policy   HostKeyPolicy
	files    []string
	db       xssh.HostKeyCallback
	hasCA    bool
	onNew    func(Endpoint, xssh.PublicKey)
	logger   *slog.Logger
	mu       sync.Mutex
	accepted map[string]xssh.PublicKey
	probe    xssh.PublicKey  // a throwaway key used to list the known keys of a host
	caKeys   map[string]bool // @cert-authority keys: never a host's own key
}

func newHostKeys(o *Options) (*hostKeys, error) {
	k := &hostKeys{policy: o.HostKeyPolicy, files: o.KnownHosts, onNew: o.OnNewHostKey, logger: o.Logger,
		accepted: map[string]xssh.PublicKey{}, caKeys: map[string]bool{}}
	if k.policy == "" {
		k.policy = Strict
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if k.probe, err = xssh.NewPublicKey(pub); err != nil {
		return nil, err
	}
	var existing []string
	for _, f := range o.KnownHosts {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading known_hosts: %w", err)
		}
		existing = append(existing, f)
		for rest := b; len(rest) > 0; {
			marker, _, key, _, r, err := xssh.ParseKnownHosts(rest)
			if err != nil {
				break
			}
			rest = r
			if marker == "cert-authority" {
				k.hasCA = true
				k.caKeys[string(key.Marshal())] = true
			}
		}
	}
	if len(existing) > 0 {
		db, err := knownhosts.New(existing...)
		if err != nil {
			return nil, fmt.Errorf("parsing known_hosts: %w", err)
		}
		k.db = db
	}
	return k, nil
}

var certAlgos = []string{
	xssh.CertAlgoED25519v01, xssh.CertAlgoECDSA256v01, xssh.CertAlgoECDSA384v01, xssh.CertAlgoECDSA521v01,
	xssh.CertAlgoRSASHA512v01, xssh.CertAlgoRSASHA256v01,
}

var plainAlgos = []string{
	xssh.KeyAlgoED25519, xssh.KeyAlgoECDSA256, xssh.KeyAlgoECDSA384, xssh.KeyAlgoECDSA521,
	xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256,
}

func algosFor(keyType string) []string {
	if keyType == xssh.KeyAlgoRSA {
		return []string{xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256}
	}
	return []string{keyType}
}

// algorithms orders the host key algorithms so the server presents a key
// we can check: the types we know for this host first (as OpenSSH's client
// does), certificates first when a certificate authority is configured.
// Without it a server with several host keys could present one we have no
// record of and look like a mismatch.
func (k *hostKeys) algorithms(ep Endpoint, pin *Pin) []string {
	var known []string
	add := func(t string) {
		for _, a := range algosFor(t) {
			if !contains(known, a) {
				known = append(known, a)
			}
		}
	}
	if pin != nil && pin.Key != nil {
		add(pin.Key.Type())
	}
	if pin == nil && k.db != nil {
		probe := k.probe
		var ke *knownhosts.KeyError
		if err := k.db(ep.Addr(), tcpAddr(ep), probe); errors.As(err, &ke) {
			for _, w := range k.hostKeysOnly(ke.Want) {
				add(w.Key.Type())
			}
		}
	}
	k.mu.Lock()
	if a, ok := k.accepted[knownhosts.Normalize(ep.Addr())]; ok {
		add(a.Type())
	}
	k.mu.Unlock()
	var out []string
	if k.hasCA && pin == nil {
		out = append(out, certAlgos...)
	}
	if len(known) > 0 {
		return append(out, known...)
	}
	return append(out, plainAlgos...)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func tcpAddr(ep Endpoint) net.Addr {
	ip := net.ParseIP(ep.Address)
	return &net.TCPAddr{IP: ip, Port: ep.port()}
}

// callback returns the HostKeyCallback for one endpoint.
func (k *hostKeys) callback(ep Endpoint, pin *Pin) xssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key xssh.PublicKey) error {
		return k.check(ep, pin, key)
	}
}

func (k *hostKeys) check(ep Endpoint, pin *Pin, key xssh.PublicKey) error {
	addr := ep.Addr()
	plain := key
	cert, isCert := key.(*xssh.Certificate)
	if isCert {
		plain = cert.Key
	}
	mismatch := func(expected []string, source string) error {
		return &HostKeyError{Host: ep.name(), Addr: addr, Presented: xssh.FingerprintSHA256(plain),
			Type: plain.Type(), Expected: expected, Source: source, err: ErrHostKeyMismatch}
	}
	if pin != nil {
		if xssh.FingerprintSHA256(plain) == pin.Fingerprint {
			return nil
		}
		return mismatch([]string{pin.Fingerprint}, "the hostKey pinned for "+ep.name())
	}
	if k.db != nil {
		err := k.db(addr, tcpAddr(ep), key)
		if err == nil {
			return nil
		}
		if isCert && strings.Contains(err.Error(), "no authorities for hostname") {
			// No CA vouches for this host: the certified key itself may be
			// known as a plain key.
			err = k.db(addr, tcpAddr(ep), plain)
			if err == nil {
				return nil
			}
		}
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case errors.As(err, &re):
			return mismatch([]string{"a key that is not revoked"}, fmt.Sprintf("%s line %d (@revoked)", re.Revoked.Filename, re.Revoked.Line))
		case errors.As(err, &ke) && len(k.hostKeysOnly(ke.Want)) > 0:
			var fps, src []string
			for _, w := range k.hostKeysOnly(ke.Want) {
				fps = append(fps, xssh.FingerprintSHA256(w.Key))
				src = append(src, w.Filename+":"+strconv.Itoa(w.Line))
			}
			return mismatch(fps, "known_hosts "+strings.Join(src, ", ")+" (remove with ssh-keygen -R "+knownhosts.Normalize(addr)+")")
		case errors.As(err, &ke):
			// unknown: fall through
		case isCert:
			// A certificate from a known CA that is not valid for this host
			// (principal, validity period): refuse.
			return mismatch([]string{"a valid host certificate"}, "@cert-authority in known_hosts: "+err.Error())
		default:
			return fmt.Errorf("checking host key of %s: %w", ep.name(), err)
		}
	}
	norm := knownhosts.Normalize(addr)
	k.mu.Lock()
	defer k.mu.Unlock()
	if a, ok := k.accepted[norm]; ok {
		if bytes.Equal(a.Marshal(), plain.Marshal()) {
			return nil
		}
		return mismatch([]string{xssh.FingerprintSHA256(a)}, "the key accepted earlier in this run")
	}
	if k.policy != AcceptNew {
		return &HostKeyError{Host: ep.name(), Addr: addr, Presented: xssh.FingerprintSHA256(plain),
			Type: plain.Type(), err: ErrHostKeyUnknown}
	}
	if len(k.files) > 0 {
		if err := appendKnownHost(k.files[0], norm, plain); err != nil {
			return fmt.Errorf("recording host key of %s: %w", ep.name(), err)
		}
	}
	k.accepted[norm] = plain
	k.logger.Warn("Trusting new host key", "host", ep.name(), "addr", addr, "type", plain.Type(),
		"fingerprint", xssh.FingerprintSHA256(plain))
	if k.onNew != nil {
		k.onNew(ep, plain)
	}
	return nil
}

// appendKnownHost appends one line and fsyncs; appends are atomic for
// lines this short.
func appendKnownHost(path, addr string, key xssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, knownhosts.Line([]string{addr}, key))
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// hostKeysOnly drops @cert-authority keys, which knownhosts lists among
// the keys wanted for a host.
func (k *hostKeys) hostKeysOnly(want []knownhosts.KnownKey) []knownhosts.KnownKey {
	var out []knownhosts.KnownKey
	for _, w := range want {
		if !k.caKeys[string(w.Key.Marshal())] {
			out = append(out, w)
		}
	}
	return out
}
