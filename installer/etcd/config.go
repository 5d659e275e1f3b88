package etcd

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
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

// The member's TLS files under PKIDir.
const (
	// CAFile is the client CA: it signs the server and client certificates
	// (--trusted-ca-file).
	CAFile = PKIDir + "/ca.crt"
	// PeerCAFile is the peer CA (--peer-trusted-ca-file) of a cluster whose
	// peer CA is its own (not pki.Etcd.SharedPeerCA).
	PeerCAFile     = PKIDir + "/peer-ca.crt"
	PeerCertFile   = PKIDir + "/peer.crt"
	PeerKeyFile    = PKIDir + "/peer.key"
	ServerCertFile = PKIDir + "/server.crt"
	ServerKeyFile  = PKIDir + "/server.key"
)

// etcd runs as its own system user and group, never as root.
const (
	User  = "etcd"
	Group = "etcd"
)

// Ownership and modes on the host: the data directory belongs to etcd
// (0700, as etcd itself asks of it); the TLS files belong to root and are
// readable by the etcd group only (0640 root:etcd, PKIDir 0750 root:etcd):
// etcd reads its keys but cannot rewrite or replace them, and nobody else
// reads them.
const (
	PKIOwner    = "root:" + Group
	PKIFileMode = 0o640
	PKIDirMode  = 0o750
	DataOwner   = User + ":" + Group
	DataDirMode = 0o700
)

// hostSetupCmd creates the etcd system user and group when missing (no
// login shell, no home) and the directories with their owners and modes.
// The recursive chown of an existing data directory (written by a member
// that ran as root) is the unit's ExecStartPre: it runs after the old
// process stopped, so no file that process writes is left to root.
const hostSetupCmd = "set -e\n" +
	"getent group " + Group + " >/dev/null || groupadd --system " + Group + "\n" +
	"getent passwd " + User + " >/dev/null || useradd --system --gid " + Group +
	" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --comment 'etcd (tricenter)' " + User + "\n" +
	"install -d -m 0755 " + ConfDir + "\n" +
	"install -d -m 0750 -o root -g " + Group + " " + PKIDir + "\n" +
	"install -d -m 0700 -o " + User + " -g " + Group + " " + DataDir

// hostSetupFacts prints hostsetup=1 when the user, group and directories
// are as hostSetupCmd leaves them.
const hostSetupFacts = `getent passwd ` + User + ` >/dev/null && getent group ` + Group + ` >/dev/null && ` +
	`[ "$(stat -c '%U:%G:%a' ` + PKIDir + ` ` + DataDir + ` 2>/dev/null | tr '\n' ' ')" = "root:` + Group + `:750 ` +
	User + `:` + Group + `:700 " ] && echo hostsetup=1 || echo hostsetup=0`

// PKIFiles are the member's TLS files: the client CA, the peer CA (only
// when it is not shared), its peer and server certificates and keys, all
// 0640 root:etcd.
func PKIFiles(p *pki.Etcd, member string) ([]phase.File, error) {
	peer, srv := p.Peer[member], p.Server[member]
	if peer == nil || srv == nil || p.CA == nil {
		return nil, fmt.Errorf("no certificates for member %s", member)
	}
	files := []phase.File{{Path: CAFile, Data: p.CA.CertPEM}}
	if !p.SharedPeerCA {
		if p.PeerCA == nil {
			return nil, fmt.Errorf("no etcd peer CA for member %s", member)
		}
		files = append(files, phase.File{Path: PeerCAFile, Data: p.PeerCA.CertPEM})
	}
	files = append(files,
		phase.File{Path: PeerCertFile, Data: peer.CertPEM},
		phase.File{Path: PeerKeyFile, Data: peer.KeyPEM, Secret: true},
		phase.File{Path: ServerCertFile, Data: srv.CertPEM},
		phase.File{Path: ServerKeyFile, Data: srv.KeyPEM, Secret: true},
	)
	for i := range files {
		files[i].Mode, files[i].Owner, files[i].DirMode = PKIFileMode, PKIOwner, PKIDirMode
	}
	return files, nil
}

// Settings are the cluster-wide values every member's configuration uses.
type Settings struct {
	ClusterName string
	Timers      inventory.Timers
	// QuotaBackendBytes bounds the database (default 8 GiB as etcd
	// recommends for the maximum).
	QuotaBackendBytes int64
	// SharedPeerCA: the cluster's peer certificates are signed by its
	// client CA (pki.Etcd.SharedPeerCA, a cluster created before the
	// split), so the peer side trusts CAFile and checks no common name.
	SharedPeerCA bool
	// SplittingPeerCA: a CA rotation is splitting the peer CA
	// (pki.Etcd.SplittingPeerCA): the peer side trusts PeerCAFile (the
	// etcd CA and the new peer CA) and checks no common name yet.
	SplittingPeerCA bool
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
		{"ETCD_CERT_FILE", ServerCertFile},
		{"ETCD_KEY_FILE", ServerKeyFile},
		{"ETCD_TRUSTED_CA_FILE", CAFile},
		{"ETCD_CLIENT_CERT_AUTH", "true"},
		{"ETCD_PEER_CERT_FILE", PeerCertFile},
		{"ETCD_PEER_KEY_FILE", PeerKeyFile},
	}
	// The peer port trusts the peer CA only, so a client certificate (of
	// CAFile) cannot open a peer connection, and the client port refuses
	// peer certificates. On top, --peer-cert-allowed-cn: every peer
	// certificate carries the one common name pki.EtcdPeerCN (and the
	// member's own SANs). A common name rather than
	// --peer-cert-allowed-hostname: etcd checks that flag with
	// x509.VerifyHostname against each listed name, so it would have to
	// list every member (a flag that changes, and restarts every member,
	// on each membership change) or every certificate would need a shared
	// SAN. etcd 3.5 and 3.6 apply the check to the verified chain on both
	// sides of a peer connection (transport.TLSInfo.baseConfig serves the
	// server and the client configuration), so the peer certificate, also
	// the peer port's server certificate, carries it too. A cluster that
	// still shares its CA keeps trusting CAFile on the peer side and its
	// peer certificates named after the members: no common-name check
	// until a CA rotation splits it.
	switch {
	case s.SharedPeerCA:
		kv = append(kv, [2]string{"ETCD_PEER_TRUSTED_CA_FILE", CAFile})
	case s.SplittingPeerCA:
		kv = append(kv, [2]string{"ETCD_PEER_TRUSTED_CA_FILE", PeerCAFile})
	default:
		kv = append(kv, [2]string{"ETCD_PEER_TRUSTED_CA_FILE", PeerCAFile}, [2]string{"ETCD_PEER_CERT_ALLOWED_CN", pki.EtcdPeerCN})
	}
	kv = append(kv, [2]string{"ETCD_PEER_CLIENT_CERT_AUTH", "true"})
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
User=` + User + `
Group=` + Group + `
EnvironmentFile=` + EnvFile + `
EnvironmentFile=-` + BootstrapFile + `
# As root ("+"): the data directory of a member that ran as root, or that
# a restore wrote, becomes etcd's before every start.
ExecStartPre=+/usr/bin/install -d -m 0700 -o ` + User + ` -g ` + Group + ` ` + DataDir + `
ExecStartPre=+/bin/chown -R ` + DataOwner + ` ` + DataDir + `
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
