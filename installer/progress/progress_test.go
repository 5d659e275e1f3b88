package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPrinterLinesAndBar(t *testing.T) {
	var b bytes.Buffer
	p := NewPrinter(&b, false)
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	p.PhaseStart("Install etcd", 3)
	p.Host("node01", "upload /usr/local/bin/etcd")
	p.UploadStart("node01", "/usr/local/bin/etcd", 4<<20)
	p.UploadStart("node02", "/usr/local/bin/etcd", 4<<20)
	now = now.Add(6 * time.Second)
	p.UploadBytes(2 << 20)
	p.UploadDone("node01", "/usr/local/bin/etcd", nil)
	p.UploadDone("node02", "/usr/local/bin/etcd", errors.New("x"))
	p.PhaseDone("Install etcd", nil, 1500*time.Millisecond)
	want := "==> Install etcd (3 hosts)\n" +
		"  node01: upload /usr/local/bin/etcd\n" +
		"  uploading [=======                       ] 2.0 MiB / 8.0 MiB  25% 341.3 KiB/s, 2 files\n" +
		"==> Install etcd done in 1.5s\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestPrinterTTYRedrawsInPlace(t *testing.T) {
	var b bytes.Buffer
	p := NewPrinter(&b, true)
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	p.UploadStart("n1", "f", 100)
	now = now.Add(time.Second)
	p.UploadBytes(50)
	p.Host("n1", "retrying")
	p.UploadDone("n1", "f", nil)
	out := b.String()
	if !strings.Contains(out, "\r\033[Kuploading [") || !strings.Contains(out, "\r\033[K  n1: retrying\n") {
		t.Fatalf("no in-place redraw: %q", out)
	}
	if !strings.HasSuffix(out, "\r\033[K") {
		t.Fatalf("the bar is not cleared at the end: %q", out)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 64 << 20: "64.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
