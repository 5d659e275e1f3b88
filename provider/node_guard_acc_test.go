package provider

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// nodeGuardSteps run with tricenter_node in state:
//   - its server powered off out of band, then back on while terraform
//     applies: the update waits until the Node reports Ready from the new
//     boot (not its stale word), within wait_reachable;
//   - its kubelet cut off from the API: the update waits out its timeout
//     and fails with what it saw; once the cut ends, it converges;
//   - a tricenter CLI apply holds the cluster's lock: terraform's change
//     waits lock_timeout and fails naming it, changing nothing, and the CLI
//     run completes.
func nodeGuardSteps(t *testing.T, ctx context.Context, k *tfLab, timer *stepTimer, engineState *string) []resource.TestStep {
	mach := func() interface {
		PowerOff(context.Context) error
		Start(context.Context) error
	} {
		m := k.lab.Machine(tfLabNodeWorker)
		if m == nil {
			t.Fatalf("no lab machine %s", tfLabNodeWorker)
		}
		return m
	}
	health := func(askServers bool) (ready bool, reason, nodeBoot, hostBoot string, err error) {
		e, done, err := k.engineFrom(*engineState)
		if err != nil {
			return false, "", "", "", err
		}
		defer done()
		hs, err := e.NodeHealth(ctx, []string{tfLabNodeWorker}, askServers)
		if err != nil {
			return false, "", "", "", err
		}
		return hs[0].Ready, hs[0].Reason, hs[0].NodeBootID, hs[0].HostBootID, nil
	}
	waitNotReady := func() {
		if err := pollFor(ctx, 60*time.Second, func() error {
			ready, _, _, _, err := health(false)
			if err != nil {
				return err
			}
			if ready {
				return fmt.Errorf("%s still reads Ready", tfLabNodeWorker)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var oldBoot, clusterState, nodeState string
	var onAt time.Time
	powerOn := make(chan struct{})
	var cliA *exec.Cmd
	var cliLog strings.Builder
	var cliMu sync.Mutex
	cliDone := make(chan error, 1)
	drop := []string{"-p", "tcp", "--dport", "6443", "-j", "DROP"}
	return []resource.TestStep{
		{
			PreConfig: func() {
				timer.begin("node powered off and on: update waits for its new boot")()
				_, _, nb, _, err := health(false)
				if err != nil {
					t.Fatal(err)
				}
				oldBoot = nb
				if err := mach().PowerOff(ctx); err != nil {
					t.Fatal(err)
				}
				waitNotReady()
				// Back on while terraform plans and applies.
				go func() {
					defer close(powerOn)
					time.Sleep(8 * time.Second)
					onAt = time.Now()
					if err := mach().Start(ctx); err != nil {
						t.Errorf("powering %s back on: %v", tfLabNodeWorker, err)
					}
				}()
			},
			Config: tfLabConfigWith(k.file, true, "", `  wait_reachable = "2m"`),
			ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction(tfLabNode, plancheck.ResourceActionUpdate),
			}},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(tfLabNode, "ready", "true"),
				func(s *terraform.State) error {
					c, err := attrs(s, tfLabCluster)
					if err != nil {
						return err
					}
					n, err := attrs(s, tfLabNode)
					if err != nil {
						return err
					}
					clusterState, nodeState = c["state"], n["state"]
					<-powerOn
					applied := time.Since(onAt)
					ready, reason, nb, hb, err := health(true)
					if err != nil {
						return err
					}
					// The update ended when the node was Ready from its new
					// boot: by now it still is.
					if !ready || nb == oldBoot || nb != hb {
						return fmt.Errorf("after the update %s: Ready %v (%s), Node boot id %s, server %s, before %s", tfLabNodeWorker, ready, reason, nb, hb, oldBoot)
					}
					t.Logf("%s powered back on during the apply: the update ended %v after power-on, with the Node Ready from its new boot",
						tfLabNodeWorker, applied.Round(time.Millisecond))
					return nil
				},
				timer.end(),
			),
		},
		{
			PreConfig: func() {
				timer.begin("kubelet cut off from the API: update fails with what it saw")()
				out, err := k.lab.Machine(tfLabNodeWorker).Command(ctx, "iptables", append([]string{"-I", "OUTPUT"}, drop...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("iptables on %s: %v: %s", tfLabNodeWorker, err, out)
				}
				waitNotReady()
			},
			Config: tfLabConfigWith(k.file, true, "", `  wait_reachable = "2m"
  timeouts {
    update = "45s"
  }`),
			ExpectError: regexp.MustCompile(`(?s)Joining tf-dc2-w01 failed.*nodes\s+Ready.*not\s+within.*heartbeat`),
		},
		{
			PreConfig: func() {
				timer.begin("kubelet reconnected: update converges")()
				out, err := k.lab.Machine(tfLabNodeWorker).Command(ctx, "iptables", append([]string{"-D", "OUTPUT"}, drop...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("iptables on %s: %v: %s", tfLabNodeWorker, err, out)
				}
			},
			Config: tfLabConfigWith(k.file, true, "", `  wait_reachable = "2m"`),
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(tfLabNode, "ready", "true"),
				timer.end(),
			),
		},
		{
			PreConfig: func() {
				timer.begin("a CLI apply holds the lock: terraform waits, then fails naming it")()
				root, err := filepath.Abs("..")
				if err != nil {
					t.Fatal(err)
				}
				bin := filepath.Join(k.dir, "tricenter")
				build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tricenter")
				build.Dir = root
				if out, err := build.CombinedOutput(); err != nil {
					t.Fatalf("building tricenter: %v\n%s", err, out)
				}
				// The CLI's state: the cluster's engine state with the node's
				// certificates, as `tricenter state restore` would make it.
				base, err := decodeFiles(types.StringValue(clusterState))
				if err != nil {
					t.Fatal(err)
				}
				own, err := decodeFiles(types.StringValue(nodeState))
				if err != nil {
					t.Fatal(err)
				}
				files := overlay(base, own)
				sdir := filepath.Join(k.dir, "lock-state")
				if err := state.Restore(filepath.Join(sdir, "tf-lab"), files); err != nil {
					t.Fatal(err)
				}
				cliA = exec.CommandContext(ctx, bin, "apply", "-f", k.file, "--state-dir", sdir, "--yes", "--verify")
				pr, pw := io.Pipe()
				cliA.Stderr, cliA.Stdout = pw, pw
				if err := cliA.Start(); err != nil {
					t.Fatal(err)
				}
				holding := make(chan struct{})
				go func() {
					sc := bufio.NewScanner(pr)
					once := sync.Once{}
					for sc.Scan() {
						cliMu.Lock()
						cliLog.WriteString(sc.Text() + "\n")
						cliMu.Unlock()
						if strings.Contains(sc.Text(), "Holding the run's locks") && strings.Contains(sc.Text(), "cluster lease in etcd") {
							once.Do(func() { close(holding) })
						}
					}
				}()
				go func() { err := cliA.Wait(); pw.Close(); cliDone <- err }()
				select {
				case <-holding:
				case err := <-cliDone:
					cliMu.Lock()
					defer cliMu.Unlock()
					t.Fatalf("the CLI apply ended (%v) before holding the lock:\n%s", err, cliLog.String())
				case <-time.After(3 * time.Minute):
					t.Fatalf("the CLI apply did not take the lock:\n%s", cliLog.String())
				}
			},
			Config:      tfLabConfigWith(k.file, true, `  lock_timeout = "3s"`, ""),
			ExpectError: regexp.MustCompile(`(?s)locked.*tricenter\s+apply\s+\(pid\s+\d+`),
		},
		{
			PreConfig: func() {
				timer.begin("the CLI apply completes; terraform converges")()
				if err := <-cliDone; err != nil {
					cliMu.Lock()
					defer cliMu.Unlock()
					t.Fatalf("the CLI apply that held the lock failed: %v\n%s", err, cliLog.String())
				}
				cliMu.Lock()
				defer cliMu.Unlock()
				if !strings.Contains(cliLog.String(), "gate") {
					t.Errorf("the CLI apply ran no gates:\n%s", cliLog.String())
				}
				t.Logf("terraform was refused while the CLI (pid %d) held the lock; the CLI apply completed", cliA.Process.Pid)
				_ = os.Remove(filepath.Join(k.dir, "tricenter"))
			},
			Config: tfLabConfigWith(k.file, true, "", ""),
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(tfLabNode, "ready", "true"),
				timer.end(),
			),
		},
	}
}
