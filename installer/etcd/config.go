package etcd

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Paths on the hosts.
const (
	BinDir        = "/usr/local/bin"
	ConfDir       = "/etc/etcd"
	PKIDir        = "/etc/etcd/pki"
	EnvFile       = "/etc/etcd/etcd.env"
	BootstrapFile = "/etc/etcd/bootstrap.env"
	UnitFile      = "/etc/systemd/system/etcd.service"
	DataDir       = "/var/lib/etcd"
	Unit          = "etcd.service"
)

// Settings are the cluster-wide values every member's configuration uses.
type Settings struct {
	ClusterName string
	Timers      inventory.Timers
	// QuotaBackendBytes bounds the database (default 8 GiB as etcd
	// recommends for the maximum).
	QuotaBackendBytes int64
}

// DefaultQuotaBackendBytes is 8 GiB.
const DefaultQuotaBackendBytes = 8 << 30

// Token is the initial cluster token: stable per cluster so a re-run
// bootstraps the same cluster.
func (s Settings) Token() string { return "tricenter-" + s.ClusterName }

// RenderEnv renders /etc/etcd/etcd.env: the member's stable settings.
// It does not contain the initial cluster, so membership changes elsewhere
// never change it (and never restart this member).
func RenderEnv(s Settings, m inventory.Member) []byte {
	q := s.QuotaBackendBytes
	if q == 0 {
		q = DefaultQuotaBackendBytes
	}
	var b bytes.Buffer
	b.WriteString("# Managed by tricenter: etcd member " + m.Name + " (" + m.Center + ", rack " + m.Rack + ")\n")
	kv := [][2]string{
		{"ETCD_NAME", m.Name},
		{"ETCD_DATA_DIR", DataDir},
		{"ETCD_LISTEN_PEER_URLS", PeerURL(m.Address)},
		{"ETCD_LISTEN_CLIENT_URLS", ClientURL(m.Address) + ",https://127.0.0.1:2379"},
		{"ETCD_ADVERTISE_CLIENT_URLS", ClientURL(m.Address)},
		{"ETCD_INITIAL_ADVERTISE_PEER_URLS", PeerURL(m.Address)},
		{"ETCD_HEARTBEAT_INTERVAL", fmt.Sprint(s.Timers.HeartbeatMs)},
		{"ETCD_ELECTION_TIMEOUT", fmt.Sprint(s.Timers.ElectionTimeoutMs)},
		{"ETCD_QUOTA_BACKEND_BYTES", fmt.Sprint(q)},
		{"ETCD_AUTO_COMPACTION_MODE", "periodic"},
		{"ETCD_AUTO_COMPACTION_RETENTION", "1h"},
		{"ETCD_SNAPSHOT_COUNT", "10000"},
		{"ETCD_STRICT_RECONFIG_CHECK", "true"},
		{"ETCD_PRE_VOTE", "true"},
		{"ETCD_LOGGER", "zap"},
		{"ETCD_LOG_OUTPUTS", "stderr"},
		{"ETCD_CERT_FILE", PKIDir + "/server.crt"},
		{"ETCD_KEY_FILE", PKIDir + "/server.key"},
		{"ETCD_TRUSTED_CA_FILE", PKIDir + "/ca.crt"},
		{"ETCD_CLIENT_CERT_AUTH", "true"},
		{"ETCD_PEER_CERT_FILE", PKIDir + "/peer.crt"},
		{"ETCD_PEER_KEY_FILE", PKIDir + "/peer.key"},
		{"ETCD_PEER_TRUSTED_CA_FILE", PKIDir + "/ca.crt"},
		{"ETCD_PEER_CLIENT_CERT_AUTH", "true"},
	}
	for _, x := range kv {
		fmt.Fprintf(&b, "%s=%s\n", x[0], x[1])
	}
	return b.Bytes()
}

// InitialMember is a name and peer URL for ETCD_INITIAL_CLUSTER.
type InitialMember struct{ Name, PeerURL string }

// RenderBootstrap renders /etc/etcd/bootstrap.env, read only at a
// member's first start: who the cluster is and whether it is new.
func RenderBootstrap(s Settings, initial []InitialMember, existing bool) []byte {
	sorted := append([]InitialMember(nil), initial...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	parts := make([]string, 0, len(sorted))
	for _, m := range sorted {
		parts = append(parts, m.Name+"="+m.PeerURL)
	}
	state := "new"
	if existing {
		state = "existing"
	}
	return fmt.Appendf(nil, "# Managed by tricenter: read at the member's first start only\n"+
		"ETCD_INITIAL_CLUSTER=%s\nETCD_INITIAL_CLUSTER_STATE=%s\nETCD_INITIAL_CLUSTER_TOKEN=%s\n",
		strings.Join(parts, ","), state, s.Token())
}

// RenderUnit renders the systemd unit.
func RenderUnit() []byte {
	return []byte(`# Managed by tricenter
[Unit]
Description=etcd key-value store (tricenter)
Documentation=https://etcd.io/docs/v3.5/
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
EnvironmentFile=` + EnvFile + `
EnvironmentFile=-` + BootstrapFile + `
ExecStart=` + BinDir + `/etcd
Restart=always
RestartSec=2s
LimitNOFILE=65536
TimeoutStartSec=0
Nice=-10
IOSchedulingClass=best-effort
IOSchedulingPriority=0

[Install]
WantedBy=multi-user.target
`)
}
