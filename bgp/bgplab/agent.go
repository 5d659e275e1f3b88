package bgplab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// BuildAgent builds cmd/tricenter-bgp into dir and returns the binary's
// path. moduleRoot is the repository root.
func BuildAgent(moduleRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "tricenter-bgp")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tricenter-bgp")
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building tricenter-bgp: %w: %s", err, out)
	}
	return bin, nil
}

// Agent is a tricenter-bgp process running in a node namespace.
type Agent struct {
	Name       string
	NS         *labnet.NS
	ConfigPath string
	Socket     string
	Log        *SyncBuffer
	p          *proc
}

// StartAgent writes cfg into dir (its status socket moved there too) and
// starts `tricenter-bgp run` in ns.
func StartAgent(ns *labnet.NS, bin, dir string, cfg *bgp.Config) (*Agent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	a := &Agent{Name: cfg.Node, NS: ns, ConfigPath: filepath.Join(dir, "agent.yaml"),
		Socket: filepath.Join(dir, "status.sock"), Log: &SyncBuffer{}}
	if err := a.WriteConfig(cfg); err != nil {
		return nil, err
	}
	p, err := startProc(ns, a.Log, cfg.Node, bin, "run", "--config", a.ConfigPath, "--log-level", "debug")
	if err != nil {
		return nil, err
	}
	a.p = p
	return a, nil
}

// WriteConfig writes cfg as the agent's configuration file (atomically),
// pointing its status socket into the agent's directory.
func (a *Agent) WriteConfig(cfg *bgp.Config) error {
	c := *cfg
	c.StatusSocket = a.Socket
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(a.ConfigPath, data, 0o600)
}

// Reload rewrites the configuration and sends SIGHUP.
func (a *Agent) Reload(cfg *bgp.Config) error {
	if err := a.WriteConfig(cfg); err != nil {
		return err
	}
	a.p.signal(syscall.SIGHUP)
	return nil
}

// HUP sends SIGHUP (reload the configuration file as it is).
func (a *Agent) HUP() { a.p.signal(syscall.SIGHUP) }

// Status asks the agent for its status over its socket.
func (a *Agent) Status(ctx context.Context) (*bgp.Status, error) {
	return bgp.FetchStatus(ctx, a.Socket)
}

// Stop sends SIGTERM (graceful stop) and waits up to 10 s.
func (a *Agent) Stop() error {
	if a.p.exited() {
		return nil
	}
	a.p.stop(10 * time.Second)
	return a.p.err
}

// Kill sends SIGKILL: the agent gets no chance to withdraw.
func (a *Agent) Kill() {
	a.p.signal(syscall.SIGKILL)
	<-a.p.done
}

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool { return a.p.exited() }

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.p.cmd.Process.Pid }
