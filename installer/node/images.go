package node

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
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

var (
	// ctrCmd is tricenter's ctr (node/containerd installs it), never
	// another one earlier in PATH.
	ctrCmd = RuntimePath(BinCtr) + " -n " + containerdNS + " images "
	// listImages lists the images, or prints noCtr when ctr is not
	// installed yet.
	listImages = "test -x " + RuntimePath(BinCtr) + " || { echo " + noCtr + "; exit 0; }; " + ctrCmd + "ls -q"
)

const (
	pinnedLabel = "io.cri-containerd.pinned=pinned"
	noCtr       = "tricenter:no-ctr"
)

// images uploads the image tarballs where they differ
// (phase.Host.InstallFiles, recorded in ImagesRecord) and imports each one
// whose image is missing from containerd, or whose tarball changed. A dry
// run on a server without containerd yet (node/containerd would install
// it) plans to import every image.
func (r *run) images(ctx context.Context, h *phase.Host) error {
	list, err := h.Query(ctx, listImages)
	if err != nil {
		return fmt.Errorf("listing containerd images (is containerd running?): %w", err)
	}
	if trim(list) == noCtr {
		if !h.DryRun() {
			return fmt.Errorf("%s is not installed: run %s first", RuntimePath(BinCtr), IDContainerd)
		}
		list = ""
	}
	have, err := ParseImageList(list)
	if err != nil {
		return err
	}
	imgs := []struct{ key, ref string }{
		{ImagePause, r.o.PauseImage},
		{ImageCoreDNS, r.o.CoreDNSImage},
	}
	for _, key := range slices.Sorted(maps.Keys(r.o.ExtraImages)) {
		imgs = append(imgs, struct{ key, ref string }{key, r.o.ExtraImages[key]})
	}
	if f := r.nodes[h.Name]; f != nil && f.host.HasRole(inventory.RoleControlPlane) {
		for _, key := range slices.Sorted(maps.Keys(r.o.ControlPlaneImages)) {
			imgs = append(imgs, struct{ key, ref string }{key, r.o.ControlPlaneImages[key]})
		}
	}
	files := make([]phase.File, len(imgs))
	for i, img := range imgs {
		files[i] = phase.File{Path: path.Join(ImageDir, img.key), Local: r.o.Binaries[img.key]}
	}
	done, err := h.InstallFiles(ctx, ImagesRecord, files)
	if err != nil {
		return fmt.Errorf("uploading the image tarballs: %w", err)
	}
	for _, img := range imgs {
		remote := path.Join(ImageDir, img.key)
		if have[img.ref] && !done.Has(remote) {
			continue
		}
		// Pinned: kubelets never garbage-collect an image no registry
		// could give back.
		if _, err := h.Sudo(ctx, ctrCmd+"import "+shell.Quote(remote)+" && "+ctrCmd+"label "+shell.Quote(img.ref)+" "+pinnedLabel); err != nil {
			return fmt.Errorf("importing %s: %w", remote, err)
		}
		if h.DryRun() {
			continue
		}
		after, err := h.Query(ctx, listImages)
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
