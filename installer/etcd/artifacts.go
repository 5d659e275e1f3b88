package etcd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// ManifestName is the sha256 manifest of an artifact directory or mirror
// (sha256sum format).
const ManifestName = "SHA256SUMS"

// ErrChecksum is wrapped when an artifact does not match its manifest.
var ErrChecksum = errors.New("artifact checksum mismatch")

// Artifacts locates the binaries to upload.
type Artifacts struct {
	// Dir is a local artifact directory (air-gapped, the default).
	Dir string
	// MirrorURL is an HTTP(S) mirror holding the same layout; files are
	// fetched into CacheDir first.
	MirrorURL string
	CacheDir  string
	// Client fetches from the mirror (default http.DefaultClient).
	Client *http.Client
}

// Resolve returns the local path of each named artifact after checking its
// sha256 against the manifest.
func (a Artifacts) Resolve(ctx context.Context, names ...string) (map[string]string, error) {
	dir := a.Dir
	if a.MirrorURL != "" {
		if a.CacheDir == "" {
			return nil, errors.New("artifacts from a mirror need a cache directory")
		}
		dir = a.CacheDir
		if err := a.fetch(ctx, names); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return nil, errors.New("no artifact directory or mirror: set spec.kubernetes.artifactDir or mirrorURL (run make artifacts)")
	}
	sums, err := readManifest(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("artifact directory %s: %w (run make artifacts)", dir, err)
	}
	out := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		want, ok := sums[n]
		if !ok {
			return nil, fmt.Errorf("artifact %s is not listed in %s: run make artifacts", n, filepath.Join(dir, ManifestName))
		}
		got, err := fsutil.FileSHA256(p)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", n, err)
		}
		if got != want {
			return nil, fmt.Errorf("%w: %s has sha256 %s, the manifest says %s", ErrChecksum, p, got, want)
		}
		out[n] = p
	}
	return out, nil
}

func (a Artifacts) fetch(ctx context.Context, names []string) error {
	cl := a.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	get := func(name string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(a.MirrorURL, "/")+"/"+name, nil)
		if err != nil {
			return nil, err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching %s from the mirror: %w", name, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetching %s from the mirror: %s", name, resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	m, err := get(ManifestName)
	if err != nil {
		return err
	}
	sums, err := parseManifest(m)
	if err != nil {
		return fmt.Errorf("mirror manifest: %w", err)
	}
	for _, n := range names {
		p := filepath.Join(a.CacheDir, n)
		if s, err := fsutil.FileSHA256(p); err == nil && s == sums[n] {
			continue
		}
		b, err := get(n)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sums[n] {
			return fmt.Errorf("%w: %s from the mirror", ErrChecksum, n)
		}
		if err := fsutil.WriteFileAtomic(p, b, 0o755); err != nil {
			return err
		}
	}
	return fsutil.WriteFileAtomic(filepath.Join(a.CacheDir, ManifestName), m, 0o644)
}

func readManifest(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseManifest(b)
}

func parseManifest(b []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			return nil, fmt.Errorf("line %d: expected \"<sha256>  <name>\"", n)
		}
		if _, err := hex.DecodeString(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out[strings.TrimPrefix(f[1], "*")] = f[0]
	}
	return out, sc.Err()
}
