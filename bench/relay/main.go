// Command relay is the relay benchmark (bench/relay.sh): it starts real
// sshd hosts in one center behind one jump host (installer/sshtest),
// optionally limits the jump host's link into the center with a tbf qdisc
// (100 Mbit/s by default), and installs the lab's artifact set
// (.cache/artifacts, the newest release of each versioned file) on every
// host at once with InstallFiles, twice: uploading every file to every
// host through the jump host (direct), then through the relay (each file
// crosses the jump host once; the other hosts copy it inside the center).
// It prints, side by side, the time, the bytes the jump host sent into
// the center (counted on its link, SSH framing included), the engine's own
// count and their ratio to the set.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/relay"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The installer benchmarks' labs use 198.18.28.0/22 (see installer/sshtest);
// bench/run.sh runs them one after another.
var block = netip.MustParsePrefix("198.18.28.0/22")

// The hosts keep their cache on their private /srv (they share this
// machine's /var/lib).
const cacheDir = "/srv/tricenter/cache/sha256"

func main() {
	hosts := flag.Int("hosts", 3, "servers in the center")
	dir := flag.String("artifacts", ".cache/artifacts", "artifact directory (make artifacts)")
	rate := flag.String("rate", "100mbit", `tbf rate of the jump host's link into the center ("" for none)`)
	verbose := flag.Bool("v", false, "log the engine's steps")
	flag.Parse()
	if err := run(*hosts, *dir, *rate, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

type artifact struct {
	name, local string
	size        int64
}

// versioned is NAME-vMAJOR.MINOR.PATCH, as hack/artifacts names releases.
var versioned = regexp.MustCompile(`^(.+)-v(\d+)\.(\d+)\.(\d+)$`)

// artifactSet lists the directory's artifacts (regular files, not hidden,
// not the manifest), keeping the newest release of each versioned one:
// what one server of the default release receives.
func artifactSet(dir string) ([]artifact, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the artifacts: %w: run make artifacts", err)
	}
	type rel struct {
		v   [3]int
		art artifact
	}
	newest := map[string]rel{}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == "SHA256SUMS" || !e.Type().IsRegular() {
			continue
		}
		st, err := e.Info()
		if err != nil {
			return nil, err
		}
		a := artifact{name: n, local: filepath.Join(dir, n), size: st.Size()}
		stem, v := n, [3]int{}
		if m := versioned.FindStringSubmatch(n); m != nil {
			stem = m[1]
			for i := range 3 {
				v[i], _ = strconv.Atoi(m[i+2])
			}
		}
		if old, ok := newest[stem]; !ok || slices.Compare(v[:], old.v[:]) > 0 {
			newest[stem] = rel{v, a}
		}
	}
	var out []artifact
	for _, r := range newest {
		out = append(out, r.art)
	}
	slices.SortFunc(out, func(a, b artifact) int { return cmp.Compare(a.name, b.name) })
	if len(out) == 0 {
		return nil, fmt.Errorf("no artifacts in %s: run make artifacts", dir)
	}
	return out, nil
}

// snapshot copies the set into work, so a rebuild of the artifacts during
// the benchmark changes nothing.
func snapshot(set []artifact, work string) ([]artifact, error) {
	out := slices.Clone(set)
	for i, a := range out {
		dst := filepath.Join(work, a.name)
		if err := copyFile(a.local, dst); err != nil {
			return nil, err
		}
		out[i].local = dst
	}
	return out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type outcome struct {
	mode  string
	took  time.Duration
	wire  int64
	count []relay.JumpBytes
}

func run(n int, dir, rate string, verbose bool) error {
	set, err := artifactSet(dir)
	if err != nil {
		return err
	}
	var total int64
	for _, a := range set {
		total += a.size
	}
	work, err := os.MkdirTemp("", "tricenter-relay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if set, err = snapshot(set, work); err != nil {
		return err
	}
	ctx := context.Background()
	// Each host holds the set twice with the relay (its cache and the
	// installed files).
	tmpfs := fmt.Sprintf("%dm", 2*total>>20+64)
	l, err := sshtest.Start(ctx, sshtest.Options{Block: block, Hosts: n, Jump: true, TmpfsSize: tmpfs})
	if err != nil {
		return err
	}
	defer l.Close()
	limit := "unlimited"
	if rate != "" {
		out, err := exec.Command("tc", "-n", l.Jump.NS.Name, "qdisc", "add", "dev", "eth1", "root", "tbf",
			"rate", rate, "burst", "256kb", "latency", "100ms").CombinedOutput()
		if err != nil {
			return fmt.Errorf("limiting the jump host's link to %s: %w: %s", rate, err, out)
		}
		limit = "tbf " + rate
	}
	c := l.OneCenter(sshtest.ClusterOptions{User: "deploy"})
	fmt.Printf("relay benchmark: %d servers in one center behind one jump host (its link into the center: %s)\n", n, limit)
	fmt.Printf("artifact set: %d files, %s (%s, newest release of each)\n", len(set), progress.Bytes(total), dir)
	files := make([]phase.File, len(set))
	for i, a := range set {
		files[i] = phase.File{Path: "/srv/opt/bin/" + a.name, Local: a.local, Mode: 0o755}
	}
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var results []outcome
	for _, mode := range []string{"direct", "relay"} {
		if err := clean(l); err != nil {
			return err
		}
		rel, err := phase.NewRelay(phase.RelayOptions{CacheDir: cacheDir, Direct: mode == "direct", Logger: log})
		if err != nil {
			return err
		}
		fmt.Printf("running %s...\n", mode)
		o, err := install(ctx, l, c, rel, files, log)
		rel.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		o.mode, o.count = mode, rel.JumpBytes()
		fmt.Printf("  %s: %s\n", mode, o.took.Round(time.Millisecond))
		for _, j := range o.count {
			fmt.Printf("  %s\n", j)
		}
		results = append(results, o)
	}
	if err := clean(l); err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("%-8s %10s %22s %22s\n", "mode", "time", "jump link (× set)", "engine count (× set)")
	for _, o := range results {
		var counted int64
		for _, j := range o.count {
			counted += j.Bytes
		}
		fmt.Printf("%-8s %9.1fs %12s (%5.2f×) %12s (%5.2f×)\n", o.mode, o.took.Seconds(), progress.Bytes(o.wire),
			float64(o.wire)/float64(total), progress.Bytes(counted), float64(counted)/float64(total))
	}
	d, r := results[0], results[1]
	fmt.Printf("relay vs direct: %.2f× fewer bytes through the jump host, %.2f× faster\n",
		float64(d.wire)/float64(r.wire), d.took.Seconds()/r.took.Seconds())
	return nil
}

// install runs InstallFiles on every host at once under rel and measures
// the time and what the jump host sent into the center.
func install(ctx context.Context, l *sshtest.Lab, c *inventory.Cluster, rel *phase.Relay, files []phase.File, log *slog.Logger) (outcome, error) {
	m := &phase.Manager{Cluster: c, Logger: log}
	defer m.Close()
	// Connect first: the handshakes are not the transfer.
	if err := m.Run(ctx, &phase.HostPhase{Name: "connect", Apply: func(ctx context.Context, h *phase.Host) error {
		_, err := h.Client(ctx)
		return err
	}}); err != nil {
		return outcome{}, err
	}
	before, err := l.JumpSentBytes()
	if err != nil {
		return outcome{}, err
	}
	start := time.Now()
	err = m.Run(phase.WithRelay(ctx, rel), &phase.HostPhase{Name: "install the artifacts", Apply: func(ctx context.Context, h *phase.Host) error {
		_, err := h.InstallFiles(ctx, "/srv/opt/bin/.artifacts.sha256", files)
		return err
	}})
	took := time.Since(start)
	after, _ := l.JumpSentBytes()
	if err != nil {
		return outcome{}, err
	}
	return outcome{took: took, wire: after - before}, nil
}

// clean removes the installed files and the caches from every host.
func clean(l *sshtest.Lab) error {
	var errs []error
	for _, h := range l.Hosts {
		for _, d := range []string{"/srv/opt", "/srv/tricenter"} {
			if err := os.RemoveAll(h.Path(d)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
