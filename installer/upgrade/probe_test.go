package upgrade

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestProbeCommandInAShell runs ProbeCommand in sh with fake binaries
// (scripts answering --version) and a fake systemctl (a script naming the
// main PID of each unit from a file): a unit running its binary, one
// running a binary replaced under it (a real process whose executable was
// renamed over, as an upload does), a unit that does not run and a binary
// that is absent.
func TestProbeCommandInAShell(t *testing.T) {
	testenv.RequireBinary(t, "sh")
	testenv.RequireBinary(t, "sleep")
	dir := t.TempDir()
	bin, fake, pids := filepath.Join(dir, "bin"), filepath.Join(dir, "fake"), filepath.Join(dir, "pids")
	for _, d := range []string{bin, fake, pids} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The fake systemctl: `systemctl show -p MainPID --value UNIT`.
	write(filepath.Join(fake, "systemctl"), "#!/bin/sh\n[ \"$1 $2 $3 $4\" = \"show -p MainPID --value\" ] || exit 1\ncat "+pids+"/\"$5\" 2>/dev/null || echo 0\n")
	write(filepath.Join(bin, "kubelet"), "#!/bin/sh\necho 'Kubernetes v1.37.2'\n")
	write(filepath.Join(bin, "kube-scheduler"), "#!/bin/sh\necho 'Kubernetes v1.36.3'\n")

	// kube-proxy: a real process started from a copy of sleep, whose
	// file is then replaced (renamed over) by the new release.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	proxy := filepath.Join(bin, "kube-proxy")
	write(proxy, string(data))
	cmd := exec.Command(proxy, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	write(proxy+".new", "#!/bin/sh\necho 'Kubernetes v1.37.2'\n")
	if err := os.Rename(proxy+".new", proxy); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(pids, "kube-proxy.service"), strconv.Itoa(cmd.Process.Pid)+"\n")

	// kubelet: what counts is a live main process whose executable was
	// not replaced (a plain sleep stands for it).
	kubelet := exec.Command(sleep, "60")
	if err := kubelet.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kubelet.Process.Kill(); _ = kubelet.Wait() })
	write(filepath.Join(pids, "kubelet.service"), strconv.Itoa(kubelet.Process.Pid)+"\n")

	probe := ProbeCommand([]ProbeTarget{
		{BinKubelet, filepath.Join(bin, "kubelet"), "kubelet.service"},
		{BinKubeProxy, proxy, "kube-proxy.service"},
		{BinScheduler, filepath.Join(bin, "kube-scheduler"), "kube-scheduler.service"},
		{BinEtcd, filepath.Join(bin, "etcd"), "etcd.service"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sh := exec.CommandContext(ctx, "sh", "-c", probe)
	sh.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	p, err := ParseProbe(string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, ok := p[BinKubelet].Runs(); !ok || got != v("v1.37.2") {
		t.Errorf("kubelet: %+v (probe said %q)", p[BinKubelet], out)
	}
	if b := p[BinKubeProxy]; !b.Running || !b.Stale || b.Installed != v("v1.37.2") {
		t.Errorf("kube-proxy running a replaced binary: %+v (probe said %q)", b, out)
	}
	if b := p[BinScheduler]; b.Running || b.Installed != v("v1.36.3") {
		t.Errorf("kube-scheduler installed, not running: %+v", b)
	}
	if b, ok := p[BinEtcd]; !ok || b.Running || b.Installed != (Binary{}).Installed {
		t.Errorf("etcd absent: %+v, %v", b, ok)
	}
	if !strings.Contains(string(out), "(deleted)") {
		t.Errorf("the replaced binary's process shows no (deleted) executable: %q", out)
	}
}
