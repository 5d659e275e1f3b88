package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestExclusive: while a test holds its turn, another holder cannot take
// the lock; once that test ends, it can.
func TestExclusive(t *testing.T) {
	old := exclusiveLock
	exclusiveLock = filepath.Join(t.TempDir(), "heavy.lock")
	t.Cleanup(func() { exclusiveLock = old })
	tryLock := func() error {
		f, err := os.OpenFile(exclusiveLock, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	t.Run("holder", func(t *testing.T) {
		Exclusive(t, "holder")
		if err := tryLock(); err == nil {
			t.Fatal("another process could take the turn while a test holds it")
		}
	})
	if err := tryLock(); err != nil {
		t.Fatalf("the turn was not given back when the test ended: %v", err)
	}
}
