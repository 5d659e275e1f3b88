package state

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestStateLock: one writer at a time per state directory; the second run
// waits, then fails naming the holder; the lock comes back on unlock and
// when the holder is killed with SIGKILL (the kernel drops its flock).
func TestStateLock(t *testing.T) {
	d, err := Open(t.TempDir(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	unlock, err := d.Lock(ctx, "tricenter apply (pid 10 on jump-1)", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := d.Holder(); h != "tricenter apply (pid 10 on jump-1)" {
		t.Errorf("holder %q", h)
	}
	var told string
	start := time.Now()
	_, err = d.Lock(ctx, "tricenter reset", 600*time.Millisecond, func(h string) { told = h })
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "tricenter apply (pid 10 on jump-1)") {
		t.Fatalf("second run: %v, want ErrLocked naming the holder", err)
	}
	if w := time.Since(start); w < 600*time.Millisecond || w > 3*time.Second {
		t.Errorf("gave up after %v, want its 0.6 s wait", w)
	}
	if told == "" {
		t.Error("the waiting run was not told who holds the lock")
	}
	// Released while the second run waits: it goes on.
	go func() {
		time.Sleep(300 * time.Millisecond)
		unlock()
	}()
	unlock2, err := d.Lock(ctx, "tricenter reset", 5*time.Second, nil)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	unlock2()
	if _, err := os.Stat(d.holderPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the holder line outlived its lock: %v", err)
	}

	// A holder killed with SIGKILL: flock(1) holds the same lock.
	testenv.RequireBinary(t, "flock")
	// -o: the lock stays with flock itself, not with sleep.
	cmd := exec.Command("flock", "-o", d.lockPath(), "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, err := d.Lock(ctx, "probe", 0, nil)
		if errors.Is(err, ErrLocked) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		u() // flock(1) has not started yet
		if time.Now().After(deadline) {
			t.Fatal("flock(1) never held the lock")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	unlock3, err := d.Lock(ctx, "after the kill", 2*time.Second, nil)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	unlock3()
}
