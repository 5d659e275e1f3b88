package backup

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// OpenRecorded opens the sealed file of m, read from src (e.g. fetched
// from the server that stores it), as Open does, and checks that it is
// the file m records: sealed for id (m.Recipient is id's public key), of
// m.SealedBytes bytes with sha256 m.SHA256, opening to m.PlainBytes. As
// with Open, dst may hold part of the data when it fails: write to a
// temporary file and discard it on error.
func OpenRecorded(dst io.Writer, src io.Reader, m Meta, id *ecdh.PrivateKey) (plainBytes int64, err error) {
	if id == nil {
		return 0, fmt.Errorf("opening snapshot %s: no identity", m.ID)
	}
	if mine := EncodeRecipient(id.PublicKey()); m.Recipient != mine {
		return 0, fmt.Errorf("snapshot %s: %w: its record says it is sealed for %s, this identity's recipient is %s", m.ID, ErrWrongKey, m.Recipient, mine)
	}
	h := sha256.New()
	var n int64
	plainBytes, err = Open(dst, io.TeeReader(src, &countWriter{w: h, n: &n}), id)
	if err != nil {
		return plainBytes, fmt.Errorf("opening snapshot %s: %w", m.ID, err)
	}
	// Open read to the end of src (it checks nothing follows the final
	// chunk), so h has seen the whole file.
	if sum := hex.EncodeToString(h.Sum(nil)); n != m.SealedBytes || sum != m.SHA256 {
		return plainBytes, fmt.Errorf("snapshot %s: %w: %d bytes with sha256 %s, the record says %d bytes with sha256 %s",
			m.ID, ErrMismatch, n, sum, m.SealedBytes, m.SHA256)
	}
	if plainBytes != m.PlainBytes {
		return plainBytes, fmt.Errorf("snapshot %s: %w: it opens to %d bytes, the record says %d", m.ID, ErrMismatch, plainBytes, m.PlainBytes)
	}
	return plainBytes, nil
}
