package node

import (
	"bufio"
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

// ParseImageList parses the output of `ctr -n k8s.io images ls -q`: one
// image reference per line. Blank lines are skipped; a line with white space
// inside (not -q output) is an error.
func ParseImageList(out string) (map[string]bool, error) {
	refs := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.ContainsFunc(line, unicode.IsSpace) {
			return nil, fmt.Errorf("image list line %d: %q is not one image reference", n, shorten(line, 80))
		}
		refs[line] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the image list: %w", err)
	}
	return refs, nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

const (
	ctrCmd      = "ctr -n " + containerdNS + " images "
	pinnedLabel = "io.cri-containerd.pinned=pinned"
)

// images uploads the image tarballs (skipped when identical) and imports
// each one whose image is missing from containerd, or whose tarball
// changed.
func (r *run) images(ctx context.Context, h *phase.Host) error {
	list, err := h.Query(ctx, ctrCmd+"ls -q")
	if err != nil {
		return fmt.Errorf("listing containerd images (is containerd running?): %w", err)
	}
	have, err := ParseImageList(list)
	if err != nil {
		return err
	}
	imgs := []struct{ key, ref string }{
		{ImagePause, r.o.PauseImage},
		{ImageCoreDNS, r.o.CoreDNSImage},
	}
	for _, key := range sortedKeys(r.o.ExtraImages) {
		imgs = append(imgs, struct{ key, ref string }{key, r.o.ExtraImages[key]})
	}
	for _, img := range imgs {
		remote := path.Join(ImageDir, img.key)
		up, err := h.Upload(ctx, r.o.Binaries[img.key], remote, 0o644)
		if err != nil {
			return err
		}
		if have[img.ref] && !up.Changed {
			continue
		}
		// Pinned: kubelets on containerd 1.7+ never garbage-collect an
		// image no registry could give back (1.6 keeps the label unused).
		if _, err := h.Sudo(ctx, ctrCmd+"import "+ssh.Quote(remote)+" && "+ctrCmd+"label "+ssh.Quote(img.ref)+" "+pinnedLabel); err != nil {
			return fmt.Errorf("importing %s: %w", remote, err)
		}
		if h.DryRun() {
			continue
		}
		after, err := h.Query(ctx, ctrCmd+"ls -q")
		if err != nil {
			return fmt.Errorf("listing containerd images: %w", err)
		}
		now, err := ParseImageList(after)
		if err != nil {
			return err
		}
		if !now[img.ref] {
			return fmt.Errorf("importing %s did not yield image %s: the tarball must name it (annotation io.containerd.image.name)", remote, img.ref)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
