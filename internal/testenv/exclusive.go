package testenv

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// exclusiveLock is the file the machine-loading tests take turns on.
var exclusiveLock = "/run/tricenter-heavy-test.lock"

// Exclusive makes the tests that load the whole machine take turns, across
// test packages (go test runs packages in parallel): a TCG VM booting next
// to a Kubernetes cluster whose center-loss drill measures API gaps in
// seconds starves the cluster and fails the measurement. It blocks until no
// other such test runs and holds the turn until the test ends. Tests that
// only start a few peers do not need it.
func Exclusive(t testing.TB, what string) {
	t.Helper()
	f, err := os.OpenFile(exclusiveLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("%s: opening %s: %v", what, exclusiveLock, err)
	}
	start := time.Now()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("%s waits for another machine-loading test to finish (%s)", what, exclusiveLock)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("%s: locking %s: %v", what, exclusiveLock, err)
		}
		t.Logf("%s waited %v for its turn", what, time.Since(start).Round(time.Second))
	}
	t.Cleanup(func() { f.Close() })
}
