package etcd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// PeerRTT is etcd's own measurement of the round trip to a peer: the mean
// of etcd_network_peer_round_trip_time_seconds since the member started.
type PeerRTT struct {
	From    string        `json:"from"`
	To      string        `json:"to"`
	Mean    time.Duration `json:"mean"`
	Samples uint64        `json:"samples"`
}

// PeerRTTs reads /metrics from every endpoint and returns the mean RTT
// from each member to each of its peers, by member name.
func (c *Client) PeerRTTs(ctx context.Context, members []Member) []PeerRTT {
	byID := map[string]string{}
	for _, m := range members {
		byID[strconv.FormatUint(m.ID, 16)] = m.Name
	}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls.Clone()}}
	defer hc.CloseIdleConnections()
	var out []PeerRTT
	for _, m := range members {
		if len(m.ClientURLs) == 0 {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURLs[0]+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		sums, counts := map[string]float64{}, map[string]uint64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			const base = "etcd_network_peer_round_trip_time_seconds_"
			if !strings.HasPrefix(l, base) {
				continue
			}
			i, j := strings.Index(l, `To="`), strings.LastIndex(l, " ")
			if i < 0 || j < 0 {
				continue
			}
			to := l[i+4:]
			to = to[:strings.IndexByte(to, '"')]
			v, err := strconv.ParseFloat(l[j+1:], 64)
			if err != nil {
				continue
			}
			switch {
			case strings.HasPrefix(l, base+"sum"):
				sums[to] = v
			case strings.HasPrefix(l, base+"count"):
				counts[to] = uint64(v)
			}
		}
		resp.Body.Close()
		for to, n := range counts {
			if n == 0 {
				continue
			}
			name := byID[to]
			if name == "" {
				name = to
			}
			out = append(out, PeerRTT{From: m.Name, To: name, Samples: n,
				Mean: time.Duration(sums[to] / float64(n) * float64(time.Second))})
		}
	}
	return out
}

// SnapshotResult describes a saved snapshot.
type SnapshotResult struct {
	Path   string `json:"path"`
	Member string `json:"member"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Snapshot streams a snapshot from the first healthy planned member into
// dir, atomically, and records its sha256 next to it (FILE.sha256).
func (c *Client) Snapshot(ctx context.Context, plan []inventory.Member, cluster, dir string) (*SnapshotResult, error) {
	var from inventory.Member
	found := false
	for _, m := range plan {
		if st := c.Status(ctx, ClientURL(m.Address)); st.Healthy && !st.IsLearner {
			from, found = m, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no healthy member to take a snapshot from", ErrUnhealthy)
	}
	one, err := NewClient([]string{ClientURL(from.Address)}, c.tls, c.log)
	if err != nil {
		return nil, err
	}
	defer one.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("etcd-%s-%s-%s.db", cluster, time.Now().UTC().Format("20060102T150405Z"), from.Name)
	final := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	rc, err := one.KV().Snapshot(ctx)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot from %s: %w", from.Name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), rc)
	rc.Close()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", from.Name, err)
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return nil, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := os.WriteFile(final+".sha256", []byte(sum+"  "+name+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &SnapshotResult{Path: final, Member: from.Name, Size: n, SHA256: sum}, nil
}

// resetCmd removes everything Apply put on a server.
const resetCmd = "systemctl disable --now " + Unit + " 2>/dev/null; systemctl reset-failed " + Unit + " 2>/dev/null; " +
	"rm -rf " + UnitFile + " " + ConfDir + " " + DataDir + " " + BinDir + "/etcd " + BinDir + "/etcdctl && systemctl daemon-reload"

const residueCmd = "for p in " + UnitFile + " " + ConfDir + " " + DataDir + " " + BinDir + "/etcd " + BinDir + "/etcdctl; do [ -e $p ] && echo $p; done; true"

// Reset stops etcd and removes its binaries, configuration, certificates
// and data from every given server that has any of them (through the
// engine's gate, so a dry run lists what would go).
func Reset(ctx context.Context, m *phase.Manager, servers []string) error {
	if len(servers) == 0 {
		return nil
	}
	return m.Run(ctx, &phase.HostPhase{Name: "etcd reset", Select: inventory.Selector{Servers: servers},
		Apply: func(ctx context.Context, h *phase.Host) error {
			out, err := h.Query(ctx, residueCmd)
			if err != nil {
				return fmt.Errorf("checking %s: %w", h.Name, err)
			}
			if strings.TrimSpace(out) == "" {
				return nil
			}
			return h.Run(ctx, phase.Command{Cmd: resetCmd, Sudo: true,
				Describe: "stop etcd and remove " + strings.Join(strings.Fields(out), ", ")})
		}})
}
