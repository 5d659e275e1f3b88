// Package backup takes encrypted, self-describing snapshots of the
// cluster's etcd on a server, stores them with a record each, prunes old
// ones, and opens them again for a restore or a check.
//
// # Why sealed
//
// An etcd snapshot holds every Kubernetes Secret of the cluster. The
// snapshots are taken by a systemd timer (tricenter-snapshot take) on etcd
// servers of one site, from a member of the other site, and kept on those
// servers' disks. Whoever reads such a disk - a stolen or decommissioned
// drive, a backup of the server, a person with root on it - must learn
// nothing from them. So a snapshot is sealed as it streams in, for a
// public key (the recipient) whose private half (the identity) only the
// operator's engine state holds: the server can seal but never open, and
// the plain database never touches its disk. The engine fetches sealed
// files (over SFTP) and opens them with the identity.
//
// What sealing does not give: anyone who has the recipient - it is
// public, and in the server's configuration - can seal a file of their
// own, and someone with write access to the directory can delete
// snapshots, or put an older sealed file and its record in the place of
// a newer one. Sealing protects the contents and detects a changed byte;
// it does not prove where a file came from. A restore therefore checks
// the record against what the operator expects (cluster, member, time,
// revision) before it trusts it. The records (Meta) are not secret: they
// hold names, times, sizes, hashes and the public recipient.
//
// The client certificate the timer uses is its own, apart from the
// engine's, so it can be revoked or rotated alone. etcd runs without its
// own authentication, so any certificate of the etcd CA reads and writes
// everything: that certificate is worth as much as the data. The timer
// runs only on etcd servers, whose member certificates give the same
// access already; what it adds to their disks is sealed.
//
// # The sealed format (tricenter-sealed-v1)
//
//	"tricenter-sealed-v1\n"                 20 bytes, the magic line
//	ephemeral X25519 public key             32 bytes, new for each file
//	chunk 0, chunk 1, ..., final chunk      AES-256-GCM, 16-byte tag each
//
// The key is HKDF-SHA256 of the X25519 shared secret between the
// ephemeral key and the recipient, with the two public keys (ephemeral
// first) as salt and "tricenter etcd snapshot v1" as info. Every chunk
// but the last carries exactly 64 KiB of plaintext; the last carries the
// rest (nothing, for empty input). The nonce of chunk i is i as an
// 11-byte big-endian counter followed by a byte that is 1 in the last
// chunk and 0 in the others: this is the STREAM construction age uses,
// so reordered, dropped, duplicated or appended chunks and a file cut at
// a chunk boundary fail to open. Keys are written as text:
// "tricenter-snapshot-key-v1:" (the identity, secret) or
// "tricenter-snapshot-recipient-v1:" (the recipient) followed by the 32
// key bytes in unpadded standard base64.
//
// The plaintext is etcd's snapshot stream as etcdctl snapshot save writes
// it: the bbolt database followed by its sha256, which Take checks while
// streaming and etcdutl snapshot restore checks again.
//
// # The directory
//
// A Dir holds <ID>.sealed and <ID>.json per snapshot, both 0600, in a 0700
// directory; ID is "<cluster>-<UTC time 20060102T150405Z>-<member>". Both
// files are written through a temporary file, fsync and rename, the
// record after the sealed file: a sealed file without its record is a
// Take that did not finish, which List ignores and Prune removes. The
// record (Meta) says which cluster and member the snapshot is of, where
// it is stored, the revision and number of keys read just before it, the
// etcd version, both sizes, the sealed file's sha256 and the recipient it
// is sealed for, so that after a key rotation the right identity can be
// found.
package backup
