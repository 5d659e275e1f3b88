package phase_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestMain lets the test binary double as a small installer process:
// with TRICENTER_PHASE_HELPER set it runs installPhase against the
// inventory in TRICENTER_INVENTORY and exits.
func TestMain(m *testing.M) {
	if os.Getenv("TRICENTER_PHASE_HELPER") != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	c, _, err := inventory.Load(os.Getenv("TRICENTER_INVENTORY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m := &phase.Manager{Cluster: c, Progress: progress.NewPrinter(os.Stdout, false)}
	defer m.Close()
	if err := m.Run(context.Background(), installPhase(os.Getenv("TRICENTER_ARTIFACT"), false)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n := 0
	for _, ch := range m.Changes() {
		n += len(ch)
	}
	fmt.Printf("changes=%d\n", n)
	return 0
}

// TestKilledMidPhaseConverges kills a real installer process (SIGKILL, by
// pid) in the middle of its uploads, then runs it again: the second run
// completes every host, the third changes nothing, no partial file was
// ever visible and no temporary file is left.
func TestKilledMidPhaseConverges(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	artifact, data := writeArtifact(t, 48<<20)
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := l.WriteInventory(inv, sshtest.ClusterOptions{User: "deploy"}); err != nil {
		t.Fatal(err)
	}
	run := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TRICENTER_PHASE_HELPER=1", "TRICENTER_INVENTORY="+inv, "TRICENTER_ARTIFACT="+artifact)
		return cmd
	}
	var stops []func()
	for _, h := range l.Hosts {
		stops = append(stops, sshtest.WatchNoPartial(t, h.Path("/srv/bin/agent"), int64(len(data))))
	}

	// First run: killed once an upload is under way.
	cmd := run()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	temps := func() []string {
		var all []string
		for _, h := range l.Hosts {
			m, _ := filepath.Glob(h.Path("/srv/bin/.agent.tricenter-*.part"))
			all = append(all, m...)
		}
		return all
	}
	deadline := time.Now().Add(90 * time.Second)
	killed := false
	for !killed {
		select {
		case err := <-done:
			t.Fatalf("the installer finished (%v) before it could be killed mid-upload:\n%s", err, out.String())
		default:
		}
		for _, p := range temps() {
			if st, err := os.Stat(p); err == nil && st.Size() > 1<<20 {
				if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
				t.Logf("killed pid %d with %s at %d bytes", cmd.Process.Pid, filepath.Base(p), st.Size())
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no upload started within 90 s:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	<-done
	if len(temps()) == 0 {
		t.Fatal("the killed run left no staging file: it was not killed mid-upload")
	}

	// Second run converges.
	out2, err := run().CombinedOutput()
	if err != nil {
		t.Fatalf("re-run failed: %v\n%s", err, out2)
	}
	for _, h := range l.Hosts {
		got, err := os.ReadFile(h.Path("/srv/bin/agent"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: artifact differs after the re-run (%v)", h.Name, err)
		}
		if m, _ := filepath.Glob(h.Path("/srv/bin/.agent.tricenter-*")); len(m) != 0 {
			t.Errorf("%s: temporary files left: %v", h.Name, m)
		}
		if m, _ := filepath.Glob(h.Path("/home/deploy/.tricenter-upload-*")); len(m) != 0 {
			t.Errorf("%s: temporary files left: %v", h.Name, m)
		}
	}
	// Third run: nothing to do.
	out3, err := run().CombinedOutput()
	if err != nil {
		t.Fatalf("third run failed: %v\n%s", err, out3)
	}
	sc := bufio.NewScanner(bytes.NewReader(out3))
	last := ""
	for sc.Scan() {
		last = sc.Text()
	}
	if last != "changes=0" {
		t.Fatalf("the third run changed things:\n%s", out3)
	}
	if !strings.Contains(string(out2), "resuming the upload of /srv/bin/agent at ") {
		t.Errorf("the re-run did not resume the interrupted upload:\n%s", out2)
	}
	if !strings.Contains(string(out2), "==> Install the test agent (3 hosts)") {
		t.Errorf("the re-run printed no phase header:\n%s", out2)
	}
	for _, s := range stops {
		s()
	}
}
