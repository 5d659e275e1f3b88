package backup

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
)

func newIdentity(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func seal(t testing.TB, plain []byte, to *ecdh.PublicKey) []byte {
	t.Helper()
	var out bytes.Buffer
	n, err := Seal(&out, bytes.NewReader(plain), to)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(plain)) {
		t.Fatalf("Seal reports %d plain bytes, want %d", n, len(plain))
	}
	return out.Bytes()
}

func open(sealed []byte, id *ecdh.PrivateKey) ([]byte, error) {
	var out bytes.Buffer
	n, err := Open(&out, bytes.NewReader(sealed), id)
	if err == nil && n != int64(out.Len()) {
		return nil, errors.New("Open's count differs from what it wrote")
	}
	return out.Bytes(), err
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sealedSize is the size of a sealed file for n plain bytes.
func sealedSize(n int) int {
	chunks := n / ChunkSize
	if n%ChunkSize != 0 || n == 0 {
		chunks++
	}
	return HeaderSize + n + chunks*tagSize
}

func TestSealRoundTrip(t *testing.T) {
	id := newIdentity(t)
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 1<<20 + 3} {
		plain := randomBytes(t, n)
		sealed := seal(t, plain, id.PublicKey())
		if len(sealed) != sealedSize(n) {
			t.Errorf("%d bytes: sealed to %d bytes, want %d", n, len(sealed), sealedSize(n))
		}
		if !bytes.HasPrefix(sealed, []byte("tricenter-sealed-v1\n")) {
			t.Errorf("%d bytes: no magic line", n)
		}
		if n > 64 && bytes.Contains(sealed, plain[:64]) {
			t.Errorf("%d bytes: the sealed form contains the plaintext", n)
		}
		got, err := open(sealed, id)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: the round trip changed the data", n)
		}
	}
}

// oneByteReader hands out one byte per Read, as a slow network stream
// might: chunking must not depend on how the source splits its reads.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestSealShortReads(t *testing.T) {
	id := newIdentity(t)
	plain := randomBytes(t, 2*ChunkSize+5)
	var sealed bytes.Buffer
	if _, err := Seal(&sealed, oneByteReader{bytes.NewReader(plain)}, id.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if sealed.Len() != sealedSize(len(plain)) {
		t.Fatalf("sealed to %d bytes, want %d", sealed.Len(), sealedSize(len(plain)))
	}
	var out bytes.Buffer
	if _, err := Open(&out, oneByteReader{bytes.NewReader(sealed.Bytes())}, id); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), plain) {
		t.Fatal("the round trip changed the data")
	}
}

func TestSealTwiceDiffers(t *testing.T) {
	id := newIdentity(t)
	plain := randomBytes(t, 1000)
	a, b := seal(t, plain, id.PublicKey()), seal(t, plain, id.PublicKey())
	if bytes.Equal(a, b) {
		t.Fatal("sealing the same input twice gave the same ciphertext")
	}
	if bytes.Equal(a[len(magic):HeaderSize], b[len(magic):HeaderSize]) {
		t.Fatal("both seals used the same ephemeral key")
	}
}

func TestOpenWrongKey(t *testing.T) {
	id, other := newIdentity(t), newIdentity(t)
	sealed := seal(t, randomBytes(t, 3*ChunkSize), id.PublicKey())
	got, err := open(sealed, other)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opened with another key: %v, want ErrWrongKey", err)
	}
	if len(got) != 0 {
		t.Fatalf("wrote %d bytes with the wrong key", len(got))
	}
	if !strings.Contains(err.Error(), "not sealed for this key") {
		t.Errorf("error %q", err)
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	id := newIdentity(t)
	// Three full chunks and a short final one.
	plain := randomBytes(t, 3*ChunkSize+100)
	sealed := seal(t, plain, id.PublicKey())
	middle := HeaderSize + encChunk + 500 // inside chunk 1
	last := len(sealed) - 3               // the final chunk's tag
	for _, c := range []struct {
		name string
		at   int
		want error
	}{
		{"magic", 3, ErrNotSealed},
		{"ephemeral key", len(magic) + 7, ErrWrongKey},
		{"first chunk", HeaderSize + 1, ErrWrongKey},
		{"middle chunk", middle, ErrTampered},
		{"last chunk", last, ErrTampered},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := bytes.Clone(sealed)
			bad[c.at] ^= 0x01
			got, err := open(bad, id)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
			// What was written before the failure is only whole,
			// authenticated chunks of the original.
			if len(got)%ChunkSize != 0 || !bytes.Equal(got, plain[:len(got)]) {
				t.Fatalf("wrote %d bytes that are not a prefix of whole chunks", len(got))
			}
		})
	}
}

func TestOpenDetectsTruncation(t *testing.T) {
	id := newIdentity(t)
	for _, n := range []int{2 * ChunkSize, 2*ChunkSize + 10} {
		sealed := seal(t, randomBytes(t, n), id.PublicKey())
		// Drop the final chunk: what remains ends at a chunk boundary.
		cut := HeaderSize + 2*encChunk
		if n == 2*ChunkSize {
			cut = HeaderSize + encChunk
		}
		if _, err := open(sealed[:cut], id); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "truncated: no final chunk") {
			t.Errorf("%d bytes, cut at a chunk boundary: %v, want ErrTruncated", n, err)
		}
		// Inside a chunk.
		if _, err := open(sealed[:cut+100], id); err == nil {
			t.Errorf("%d bytes, cut inside a chunk: opened", n)
		}
		// Header only, and less.
		if _, err := open(sealed[:HeaderSize], id); !errors.Is(err, ErrTruncated) {
			t.Errorf("header only: %v, want ErrTruncated", err)
		}
		if _, err := open(sealed[:HeaderSize-5], id); !errors.Is(err, ErrTruncated) {
			t.Errorf("part of the header: %v, want ErrTruncated", err)
		}
	}
	if _, err := open(nil, id); !errors.Is(err, ErrNotSealed) {
		t.Errorf("empty input: %v, want ErrNotSealed", err)
	}
}

func TestOpenDetectsAppendedData(t *testing.T) {
	id := newIdentity(t)
	for _, c := range []struct {
		n    int
		want error
	}{
		// A full final chunk followed by more bytes is recognised as such.
		{ChunkSize, ErrTrailingData},
		{2 * ChunkSize, ErrTrailingData},
		// A short final chunk followed by more bytes no longer
		// authenticates as one chunk.
		{ChunkSize + 10, ErrTampered},
		{10, ErrWrongKey},
	} {
		sealed := seal(t, randomBytes(t, c.n), id.PublicKey())
		for _, extra := range [][]byte{{0}, randomBytes(t, 100), randomBytes(t, encChunk)} {
			bad := append(bytes.Clone(sealed), extra...)
			if _, err := open(bad, id); !errors.Is(err, c.want) {
				t.Errorf("%d bytes + %d appended: %v, want %v", c.n, len(extra), err, c.want)
			}
		}
	}
}

func TestOpenDetectsReorderedChunks(t *testing.T) {
	id := newIdentity(t)
	sealed := seal(t, randomBytes(t, 3*ChunkSize+1), id.PublicKey())
	c1 := sealed[HeaderSize+encChunk : HeaderSize+2*encChunk]
	c2 := sealed[HeaderSize+2*encChunk : HeaderSize+3*encChunk]
	bad := bytes.Clone(sealed)
	copy(bad[HeaderSize+encChunk:], c2)
	copy(bad[HeaderSize+2*encChunk:], c1)
	if _, err := open(bad, id); !errors.Is(err, ErrTampered) {
		t.Fatalf("swapped chunks: %v, want ErrTampered", err)
	}
}

func TestKeyEncoding(t *testing.T) {
	id := newIdentity(t)
	s := EncodeIdentity(id)
	if !strings.HasPrefix(s, "tricenter-snapshot-key-v1:") {
		t.Fatalf("identity %q", s[:10])
	}
	back, err := ParseIdentity(" " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(id) {
		t.Fatal("the identity changed in the round trip")
	}
	r := EncodeRecipient(id.PublicKey())
	if !strings.HasPrefix(r, "tricenter-snapshot-recipient-v1:") {
		t.Fatalf("recipient %q", r)
	}
	pub, err := ParseRecipient(r + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(id.PublicKey()) {
		t.Fatal("the recipient changed in the round trip")
	}
}

func TestParseKeyErrors(t *testing.T) {
	id := newIdentity(t)
	secret := EncodeIdentity(id)
	body := strings.TrimPrefix(secret, IdentityPrefix)
	for _, c := range []struct {
		name, in, want string
		parse          func(string) error
	}{
		{"identity given as recipient", secret, "this is a snapshot identity", recipientErr},
		{"recipient given as identity", EncodeRecipient(id.PublicKey()), "this is a snapshot recipient", identityErr},
		{"no prefix", body, `must start with "tricenter-snapshot-key-v1:"`, identityErr},
		{"bad base64", IdentityPrefix + body[:10] + "!" + body[11:], "not unpadded standard base64", identityErr},
		{"padded", IdentityPrefix + body + "=", "not unpadded standard base64", identityErr},
		{"short", IdentityPrefix + body[:20], "15 bytes after the prefix, want 32", identityErr},
		{"long", IdentityPrefix + body + body, "characters after the prefix, want 43", identityErr},
		{"empty", "", "must start with", recipientErr},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.parse(c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			// Never echo key material.
			if len(body) > 8 && strings.Contains(err.Error(), body[:8]) {
				t.Fatalf("the error quotes the key: %v", err)
			}
		})
	}
}

func identityErr(s string) error  { _, err := ParseIdentity(s); return err }
func recipientErr(s string) error { _, err := ParseRecipient(s); return err }

func FuzzParseRecipient(f *testing.F) {
	id, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeRecipient(id.PublicKey()))
	f.Add(EncodeIdentity(id))
	f.Add(RecipientPrefix + "====")
	f.Fuzz(func(t *testing.T, s string) {
		if k, err := ParseRecipient(s); err == nil {
			if got := EncodeRecipient(k); got != strings.TrimSpace(s) {
				t.Fatalf("%q parsed, but encodes back as %q", s, got)
			}
		}
		if k, err := ParseIdentity(s); err == nil {
			if got := EncodeIdentity(k); got != strings.TrimSpace(s) {
				t.Fatalf("%q parsed, but encodes back differently", s)
			}
		}
	})
}

// FuzzOpen: Open never panics, and accepts nothing a mutation of a sealed
// file makes of it unless the mutation left it whole.
func FuzzOpen(f *testing.F) {
	id, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	var sealed bytes.Buffer
	if _, err := Seal(&sealed, strings.NewReader("hello"), id.PublicKey()); err != nil {
		f.Fatal(err)
	}
	f.Add(sealed.Bytes())
	f.Add([]byte(magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := open(b, id)
		if err == nil && !bytes.Equal(b, sealed.Bytes()) && string(out) == "hello" {
			// Only a forgery would open to the same text.
			t.Fatalf("a changed file opened")
		}
	})
}
