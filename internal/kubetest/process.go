package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// module is the main module's path, as go.mod declares it.
const module = "github.com/tricenter/terraform-provider-tricenter"

// tailBytes is how much of a process's output a failure shows.
const tailBytes = 3000

// process is a real process the test started; it is killed and reaped
// when the test ends. It keeps its combined output.
type process struct {
	name string
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// tail returns the last tailBytes of the output.
func (p *process) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.out.String()
	if len(s) > tailBytes {
		s = s[len(s)-tailBytes:]
	}
	return s
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProcess starts bin; when the test ends it kills it, waits for it
// and, if the test failed, logs its output tail.
func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: filepath.Base(bin), done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", p.name, p.tail())
		}
	})
	return p
}

// freePort picks a free loopback TCP port.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// artifactDir is .cache/artifacts in the repository root: the first
// directory above the working directory (a test's package directory)
// whose go.mod declares the main module, so it does not depend on how deep
// the calling package is.
func artifactDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, ".cache", "artifacts")
}

// moduleRoot walks up from dir to the directory whose go.mod declares
// module (skipping the nested modules under hack/artifacts).
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && declares(b, module) {
			return d, nil
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("reading %s: %w", filepath.Join(d, "go.mod"), err)
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s above %s: run the test inside the repository", module, dir)
		}
	}
}

// declares reports whether the go.mod text gomod declares module m.
func declares(gomod []byte, m string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == m {
			return true
		}
	}
	return false
}
