package backup

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Text forms of the keys.
const (
	// IdentityPrefix starts an encoded private key (EncodeIdentity).
	IdentityPrefix = "tricenter-snapshot-key-v1:"
	// RecipientPrefix starts an encoded public key (EncodeRecipient).
	RecipientPrefix = "tricenter-snapshot-recipient-v1:"
)

// Format is the magic line every sealed file starts with.
const Format = "tricenter-sealed-v1"

const (
	magic = Format + "\n"
	// ChunkSize is the most plaintext one sealed chunk carries.
	ChunkSize = 64 << 10
	tagSize   = 16
	encChunk  = ChunkSize + tagSize
	keySize   = 32
	hkdfInfo  = "tricenter etcd snapshot v1"
	// HeaderSize is the length of the magic line and the ephemeral key.
	HeaderSize = len(magic) + keySize
)

// Errors of Open, checked with errors.Is.
var (
	// ErrNotSealed: the input does not start with the magic line.
	ErrNotSealed = errors.New("not a " + Format + " file")
	// ErrWrongKey: the first chunk does not open with this key. The
	// format names no recipient, so Open reports a header or first chunk
	// altered on disk the same way (and says so).
	ErrWrongKey = errors.New("not sealed for this key")
	// ErrTampered: a later chunk failed authentication.
	ErrTampered = errors.New("authentication failed: the sealed data was altered, truncated inside a chunk or has data appended")
	// ErrTruncated: the input ended before the final chunk.
	ErrTruncated = errors.New("truncated: no final chunk")
	// ErrTrailingData: bytes follow the final chunk.
	ErrTrailingData = errors.New("data after the final chunk")
)

// errWrongKey is what Open returns when the first chunk does not open.
var errWrongKey = fmt.Errorf("%w (or its header or first chunk was altered)", ErrWrongKey)

// NewIdentity makes a new X25519 private key.
func NewIdentity() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

var b64 = base64.RawStdEncoding

// EncodeIdentity is the text form of a private key: IdentityPrefix and the
// key's 32 bytes in unpadded standard base64. It is a secret.
func EncodeIdentity(k *ecdh.PrivateKey) string {
	return IdentityPrefix + b64.EncodeToString(k.Bytes())
}

// EncodeRecipient is the text form of a public key: RecipientPrefix and
// its 32 bytes in unpadded standard base64.
func EncodeRecipient(k *ecdh.PublicKey) string {
	return RecipientPrefix + b64.EncodeToString(k.Bytes())
}

// ParseIdentity reads EncodeIdentity's form (surrounding white space is
// ignored). Its errors never quote the input.
func ParseIdentity(s string) (*ecdh.PrivateKey, error) {
	b, err := parseKey(s, IdentityPrefix, "snapshot identity")
	if err != nil {
		return nil, err
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, errors.New("snapshot identity: not an X25519 private key")
	}
	return k, nil
}

// ParseRecipient reads EncodeRecipient's form (surrounding white space is
// ignored). Its errors never quote the input.
func ParseRecipient(s string) (*ecdh.PublicKey, error) {
	b, err := parseKey(s, RecipientPrefix, "snapshot recipient")
	if err != nil {
		return nil, err
	}
	k, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, errors.New("snapshot recipient: not an X25519 public key")
	}
	return k, nil
}

func parseKey(s, prefix, what string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, prefix) {
		other := IdentityPrefix
		if prefix == IdentityPrefix {
			other = RecipientPrefix
		}
		if strings.HasPrefix(s, other) {
			return nil, fmt.Errorf("%s: this is a %s, it must start with %q", what, kindOf(other), prefix)
		}
		return nil, fmt.Errorf("%s: it must start with %q", what, prefix)
	}
	body := s[len(prefix):]
	// DecodedLen is an upper bound; decoding into a fixed buffer keeps an
	// oversized input from allocating.
	if b64.DecodedLen(len(body)) > keySize+3 {
		return nil, fmt.Errorf("%s: %d characters after the prefix, want %d", what, len(body), b64.EncodedLen(keySize))
	}
	buf := make([]byte, keySize+3)
	n, err := b64.Decode(buf, []byte(body))
	if err != nil {
		return nil, fmt.Errorf("%s: not unpadded standard base64 after the prefix", what)
	}
	if n != keySize {
		return nil, fmt.Errorf("%s: %d bytes after the prefix, want %d", what, n, keySize)
	}
	return buf[:n], nil
}

func kindOf(prefix string) string {
	if prefix == IdentityPrefix {
		return "snapshot identity (a private key)"
	}
	return "snapshot recipient (a public key)"
}

// streamKey derives the AEAD of a sealed file from the shared secret and
// both public keys.
func streamKey(shared, ephPub, toPub []byte) (cipher.AEAD, error) {
	salt := make([]byte, 0, 2*keySize)
	salt = append(append(salt, ephPub...), toPub...)
	key, err := hkdf.Key(sha256.New, shared, salt, hkdfInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// nonce sets n to the STREAM nonce of chunk i: an 11-byte big-endian
// counter and a final flag. A uint64 counter never wraps the 11 bytes.
func nonce(n []byte, i uint64, final bool) {
	clear(n)
	for j := 10; j >= 0 && i > 0; j-- {
		n[j] = byte(i)
		i >>= 8
	}
	if final {
		n[11] = 1
	}
}

// Seal encrypts src for the holder of to's private key and writes the
// sealed form to dst: the magic line "tricenter-sealed-v1\n", a fresh
// ephemeral X25519 public key (32 bytes), then src in chunks of up to
// ChunkSize bytes, each sealed with AES-256-GCM (16-byte tag). The key is
// HKDF-SHA256 of the X25519 shared secret, salted with the ephemeral and
// the recipient's public keys; the nonce of chunk i is i as an 11-byte
// big-endian counter followed by 1 for the last chunk and 0 otherwise, so
// a reader detects reordered, dropped or appended chunks. Every chunk but
// the last is full; empty input gives one empty final chunk.
//
// Memory use does not depend on the input's size. plainBytes is how much
// of src was sealed.
func Seal(dst io.Writer, src io.Reader, to *ecdh.PublicKey) (plainBytes int64, err error) {
	if to == nil {
		return 0, errors.New("sealing: no recipient")
	}
	eph, err := NewIdentity()
	if err != nil {
		return 0, err
	}
	shared, err := eph.ECDH(to)
	if err != nil {
		return 0, fmt.Errorf("sealing: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	aead, err := streamKey(shared, ephPub, to.Bytes())
	if err != nil {
		return 0, err
	}
	if _, err := io.WriteString(dst, magic); err != nil {
		return 0, err
	}
	if _, err := dst.Write(ephPub); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(src, ChunkSize)
	buf := make([]byte, encChunk)
	n12 := make([]byte, aead.NonceSize())
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(br, buf[:ChunkSize])
		final := false
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			final = true
		case err != nil:
			return plainBytes, fmt.Errorf("reading what to seal: %w", err)
		default:
			// A full chunk is the last when nothing follows it.
			if _, perr := br.Peek(1); errors.Is(perr, io.EOF) {
				final = true
			} else if perr != nil {
				return plainBytes, fmt.Errorf("reading what to seal: %w", perr)
			}
		}
		plainBytes += int64(n)
		nonce(n12, i, final)
		out := aead.Seal(buf[:0], n12, buf[:n], nil)
		if _, err := dst.Write(out); err != nil {
			return plainBytes, err
		}
		if final {
			return plainBytes, nil
		}
	}
}

// Open decrypts what Seal wrote for id's public key into dst and checks
// that nothing was altered, reordered, dropped or appended.
//
// Open writes each chunk once it is authenticated, so when it fails on a
// later chunk dst already holds the earlier ones: callers write to a
// temporary file and discard it on error. plainBytes is how much it wrote.
func Open(dst io.Writer, src io.Reader, id *ecdh.PrivateKey) (plainBytes int64, err error) {
	if id == nil {
		return 0, errors.New("opening: no identity")
	}
	br := bufio.NewReaderSize(src, encChunk)
	hdr := make([]byte, HeaderSize)
	if n, err := io.ReadFull(br, hdr); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%w: it is empty", ErrNotSealed)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && !strings.HasPrefix(magic, string(hdr[:min(n, len(magic))])) {
			return 0, ErrNotSealed
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w (the header ends after %d bytes)", ErrTruncated, n)
		}
		return 0, fmt.Errorf("reading the sealed header: %w", err)
	}
	if string(hdr[:len(magic)]) != magic {
		return 0, ErrNotSealed
	}
	ephPub := hdr[len(magic):]
	eph, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return 0, errWrongKey
	}
	shared, err := id.ECDH(eph)
	if err != nil {
		// A low-order ephemeral key: no file Seal wrote has one.
		return 0, errWrongKey
	}
	aead, err := streamKey(shared, ephPub, id.PublicKey().Bytes())
	if err != nil {
		return 0, err
	}
	// Not in place: a failed Open clears its output, and a failed chunk
	// is tried again as the other kind (last or not).
	buf, out := make([]byte, encChunk), make([]byte, ChunkSize)
	n12 := make([]byte, aead.NonceSize())
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(br, buf)
		final := false
		switch {
		case errors.Is(err, io.EOF):
			return plainBytes, ErrTruncated
		case errors.Is(err, io.ErrUnexpectedEOF):
			final = true
		case err != nil:
			return plainBytes, fmt.Errorf("reading sealed chunk %d: %w", i, err)
		default:
			if _, perr := br.Peek(1); errors.Is(perr, io.EOF) {
				final = true
			} else if perr != nil {
				return plainBytes, fmt.Errorf("reading sealed chunk %d: %w", i, perr)
			}
		}
		if n < tagSize {
			return plainBytes, fmt.Errorf("%w (chunk %d has %d bytes, less than its tag)", ErrTruncated, i, n)
		}
		nonce(n12, i, final)
		plain, oerr := aead.Open(out[:0], n12, buf[:n], nil)
		if oerr != nil {
			// A full chunk may have been taken for the wrong kind: one
			// sealed as the last, followed by more bytes (data was
			// appended), or one sealed as not the last with nothing after
			// it (the final chunk was dropped).
			if n == encChunk {
				nonce(n12, i, !final)
				if _, ferr := aead.Open(out[:0], n12, buf[:n], nil); ferr == nil {
					if final {
						return plainBytes, ErrTruncated
					}
					return plainBytes, ErrTrailingData
				}
			}
			if i == 0 {
				return plainBytes, errWrongKey
			}
			return plainBytes, fmt.Errorf("chunk %d: %w", i, ErrTampered)
		}
		if _, err := dst.Write(plain); err != nil {
			return plainBytes, err
		}
		plainBytes += int64(len(plain))
		if final {
			return plainBytes, nil
		}
	}
}
