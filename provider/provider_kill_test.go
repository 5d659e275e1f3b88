package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestProviderKilledLeavesNoPKI runs the provider binary the way a user
// does (terraform with a dev_overrides CLI configuration, no init, TMPDIR
// and HOME pointing to empty directories of the test, the Terraform state
// kept outside them with -state): an apply of tricenter_cluster that creates the PKI and
// stops before any host (the inventory's key file does not exist; nothing
// is contacted), then a plan whose refresh loads that PKI into the
// provider, which the test SIGKILLs (the provider process it finds as a
// child of the terraform it started) while the refresh runs. Then no file
// under TMPDIR, HOME or the working directory holds a private key or the
// cluster's CA certificate: the provider keeps the engine state in memory
// only, so there is nothing for a killed provider to leave behind.
func TestProviderKilledLeavesNoPKI(t *testing.T) {
	terraformForUnitTests(t)
	testenv.RequireBinary(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "terraform-provider-tricenter"), "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the provider: %v\n%s", err, out)
	}
	work, home, tmp, tfstate, cfg := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	rc := filepath.Join(cfg, "dev.tfrc")
	writeTestFile(t, rc, fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"tricenter/tricenter\" = %q\n  }\n  direct {}\n}\n", bin))
	inv := filepath.Join(cfg, "inventory.yaml")
	writeTestFile(t, inv, labInventory(t))
	statePath := filepath.Join(tfstate, "terraform.tfstate")
	writeTestFile(t, filepath.Join(work, "main.tf"), fmt.Sprintf(`terraform {
  required_providers {
    tricenter = { source = "tricenter/tricenter" }
  }
}

provider "tricenter" {}

resource "tricenter_cluster" "lab" {
  path = %q
}
`, inv))
	env := []string{"TF_CLI_CONFIG_FILE=" + rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
		"HOME=" + home, "TMPDIR=" + tmp, "XDG_CACHE_HOME=", "XDG_CONFIG_HOME=", "XDG_DATA_HOME=", "XDG_STATE_HOME=", "XDG_RUNTIME_DIR=",
		"TF_LOG=", "TF_LOG_PROVIDER="}
	command := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Getenv("TF_ACC_TERRAFORM_PATH"), args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}
	start := time.Now()
	out, err := command("apply", "-auto-approve", "-input=false", "-no-color", "-state="+statePath).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "state reached so far is saved") {
		t.Fatalf("terraform apply: %v (want the failed apply that keeps the PKI)\n%s", err, out)
	}
	t.Logf("apply (PKI created, then stopped before any host): %s", time.Since(start).Round(time.Millisecond))
	ca := stateCACertificate(t, statePath)

	// The plan: kill the provider while it refreshes the cluster.
	plan := command("plan", "-input=false", "-no-color", "-state="+statePath)
	var buf lockedBuffer
	plan.Stdout, plan.Stderr = &buf, &buf
	plan.Cancel = func() error { return plan.Process.Kill() } // only the terraform this test started
	if err := plan.Start(); err != nil {
		t.Fatal(err)
	}
	killed := 0
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && killed == 0 {
		if strings.Contains(buf.String(), "tricenter_cluster.lab: Refreshing state") {
			for _, pid := range childrenNamed(t, plan.Process.Pid, "terraform-provider-tricenter") {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatalf("SIGKILL provider %d: %v", pid, err)
				}
				t.Logf("killed provider pid %d (child of terraform %d) during the refresh", pid, plan.Process.Pid)
				killed++
			}
		}
		if plan.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	err = plan.Wait()
	if killed == 0 {
		t.Fatalf("no provider process to kill during the refresh (terraform plan: %v):\n%s", err, buf.String())
	}
	if err == nil {
		t.Fatalf("terraform plan succeeded although its provider was killed:\n%s", buf.String())
	}

	needles := []string{"PRIVATE KEY", caBody(t, ca)}
	for _, dir := range []string{tmp, home, work} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("reading %s: %v", p, err)
				return nil
			}
			for _, n := range needles {
				if bytes.Contains(b, []byte(n)) {
					t.Errorf("%s holds %.40q: PKI left on disk by the provider", p, n)
				}
			}
			return nil
		})
	}
	// The check has teeth: the Terraform state (outside the scanned
	// directories, -state) does hold both.
	st, _ := os.ReadFile(statePath)
	if !bytes.Contains(st, []byte("PRIVATE KEY")) || !bytes.Contains(st, []byte(needles[1])) {
		t.Fatal("the Terraform state holds no PKI: the scan proves nothing")
	}
}

// stateCACertificate is tricenter_cluster.lab's ca_certificate in a
// local state file.
func stateCACertificate(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Resources []struct {
			Type      string `json:"type"`
			Instances []struct {
				Attributes map[string]any `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Resources {
		if r.Type == "tricenter_cluster" && len(r.Instances) == 1 {
			if ca, _ := r.Instances[0].Attributes["ca_certificate"].(string); ca != "" {
				return ca
			}
		}
	}
	t.Fatalf("no ca_certificate in %s", p)
	return ""
}

// caBody is the first base64 line of a PEM certificate: what any copy of
// it on disk, PEM or inside JSON, contains.
func caBody(t *testing.T, pemText string) string {
	t.Helper()
	lines := strings.Split(pemText, "\n")
	if len(lines) < 2 || len(lines[1]) < 40 {
		t.Fatalf("unexpected CA certificate %q", pemText)
	}
	return lines[1]
}

// childrenNamed lists the processes whose parent is ppid and whose name
// starts with name (a kernel comm is cut to 15 bytes).
func childrenNamed(t *testing.T, ppid int, name string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm := s[open+1 : end]
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == ppid && strings.HasPrefix(name, comm) && len(comm) > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// lockedBuffer is an io.Writer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

var _ io.Writer = (*lockedBuffer)(nil)

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
