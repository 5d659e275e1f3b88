package state

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestBlobCurrentFormat(t *testing.T) {
	files := map[string]string{"pki/etcd/ca.key": "K", "pki/etcd/ca.crt": "C", "prior.json": "{}\n"}
	enc, err := EncodeBlob(files)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"format":2,"files":{"pki/etcd/ca.crt":"C","pki/etcd/ca.key":"K","prior.json":"{}\n"}}`
	if enc != want {
		t.Fatalf("EncodeBlob = %s, want %s", enc, want)
	}
	got, format, err := DecodeBlob(enc)
	if err != nil || format != BlobFormat || !reflect.DeepEqual(got, files) {
		t.Fatalf("DecodeBlob = %v, %d, %v", got, format, err)
	}
	if enc, _ := EncodeBlob(nil); enc != `{"format":2,"files":{}}` {
		t.Fatalf("EncodeBlob(nil) = %s", enc)
	}
}

// TestBlobBareFormat: a blob written before the format field (a bare JSON
// object of files) is read, and encoding it again gives the current
// format with the same files.
func TestBlobBareFormat(t *testing.T) {
	old := `{"pki/etcd/ca.crt":"C","pki/etcd/ca.key":"K","prior.json":"{}\n"}`
	files, format, err := DecodeBlob(old)
	if err != nil || format != BlobFormatBare {
		t.Fatalf("DecodeBlob(bare) = format %d, %v", format, err)
	}
	if len(files) != 3 || files["pki/etcd/ca.key"] != "K" {
		t.Fatalf("bare files: %v", files)
	}
	upgraded, err := EncodeBlob(files)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(upgraded, `{"format":2,`) {
		t.Fatalf("re-encoded %s", upgraded)
	}
	again, _, err := DecodeBlob(upgraded)
	if err != nil || !reflect.DeepEqual(again, files) {
		t.Fatalf("upgrade changed the files: %v, %v", again, err)
	}
	// A bare state with a file called "format" is still a bare state.
	if f, format, err := DecodeBlob(`{"format":"x","prior.json":"{}"}`); err != nil || format != BlobFormatBare || f["format"] != "x" {
		t.Fatalf("bare state with a file named format: %v, %d, %v", f, format, err)
	}
	if f, format, err := DecodeBlob(`{}`); err != nil || format != BlobFormatBare || len(f) != 0 {
		t.Fatalf("empty bare state: %v, %d, %v", f, format, err)
	}
}

func TestBlobNewerAndBroken(t *testing.T) {
	_, format, err := DecodeBlob(`{"format":3,"files":{},"keys":{}}`)
	if !errors.Is(err, ErrNewerBlob) || format != 3 {
		t.Fatalf("format 3: %d, %v, want ErrNewerBlob", format, err)
	}
	if !strings.Contains(err.Error(), "written by a newer provider: upgrade the provider") {
		t.Errorf("the error says no remedy: %v", err)
	}
	for _, bad := range []string{`[1]`, `{"a":1}`, `{"format":2,"files":[]}`, `{"format":1,"files":{}}`, `{"format":2.5}`, `not json`} {
		if _, _, err := DecodeBlob(bad); err == nil || errors.Is(err, ErrNewerBlob) {
			t.Errorf("DecodeBlob(%s) = %v, want an error", bad, err)
		}
	}
	if f, format, err := DecodeBlob(""); err != nil || format != 0 || len(f) != 0 {
		t.Fatalf("empty blob: %v, %d, %v", f, format, err)
	}
}

func FuzzDecodeBlob(f *testing.F) {
	for _, s := range []string{`{"format":2,"files":{"a":"b"}}`, `{"a":"b"}`, `{"format":3}`, `[]`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		files, _, err := DecodeBlob(s)
		if err != nil {
			return
		}
		enc, err := EncodeBlob(files)
		if err != nil {
			t.Fatal(err)
		}
		again, format, err := DecodeBlob(enc)
		if err != nil || format != BlobFormat || !reflect.DeepEqual(again, files) {
			t.Fatalf("%q: re-encoded blob reads back as %v, %d, %v", s, again, format, err)
		}
	})
}
