package controlplane

import (
	"context"
	"fmt"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// binaries uploads kube-apiserver, kube-controller-manager,
// kube-scheduler and kubectl where they differ, and keeps the binaries
// record in step. A changed daemon binary marks its component for a
// restart.
func (r *run) binaries(ctx context.Context, h *phase.Host) error {
	st := r.state(h.Name)
	uploaded := false
	sums := map[string]string{}
	for _, b := range Binaries() {
		local := r.o.Binaries[b]
		sum, err := r.localSum(local)
		if err != nil {
			return fmt.Errorf("reading %s (%s): %w", b, local, err)
		}
		sums[b] = sum
		if st.files.same(BinDir+"/"+b, sum, 0o755) {
			continue
		}
		res, err := h.Upload(ctx, local, r.path(BinDir+"/"+b), 0o755)
		if err != nil {
			return fmt.Errorf("uploading %s: %w", b, err)
		}
		if res.Changed {
			uploaded = true
			if b != Kubectl {
				r.markChanged(h.Name, b)
			}
		}
	}
	return r.recordBinaries(ctx, h, st.files, sums, uploaded)
}

// recordBinaries rewrites BinariesRecord when it no longer matches the
// binaries on the server (after an upload, their new size and mtime).
func (r *run) recordBinaries(ctx context.Context, h *phase.Host, cur *fileStates, sums map[string]string, uploaded bool) error {
	stat := cur.stat
	if uploaded && !h.DryRun() {
		var paths []string
		for _, b := range Binaries() {
			paths = append(paths, ssh.Quote(r.path(BinDir+"/"+b)))
		}
		out, err := h.Query(ctx, "stat -c '%s %Y %n' "+strings.Join(paths, " "))
		if err != nil {
			return fmt.Errorf("reading the uploaded binaries: %w", err)
		}
		stat = map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 3 {
				stat[r.unprefix(f[2])] = f[0] + " " + f[1]
			}
		}
	}
	var b strings.Builder
	for _, name := range Binaries() {
		p := BinDir + "/" + name
		s, ok := stat[p]
		if !ok {
			s = "0 0"
		}
		fmt.Fprintf(&b, "%s %s %s\n", sums[name], s, r.path(p))
	}
	if b.String() == cur.record {
		return nil
	}
	if _, err := h.WriteFile(ctx, r.path(BinariesRecord), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", BinariesRecord, err)
	}
	return nil
}

// localSum hashes a local file once per run.
func (r *run) localSum(path string) (string, error) {
	r.mu.Lock()
	s, ok := r.sums[path]
	r.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := fsutil.FileSHA256(path)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.sums[path] = s
	r.mu.Unlock()
	return s, nil
}
