// Package gates holds the verifications an apply ends with: a Gate is one
// check polled until it holds or its time runs out, failing with what its
// last check saw. The engine contributes one phase per gate (gates/etcd,
// gates/bgp, gates/control-plane, gates/nodes, gates/dataplane) and feeds
// each its check; the checks that need only the Kubernetes API (Readyz,
// NodeProblems, Dataplane) live here.
package gates

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Gate is one verification after apply.
type Gate struct {
	// ID is the gate's phase ID (gates/…).
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// NotRun says why a gate was not checked this time (OK is then
	// false and the gate does not fail the run).
	NotRun string        `json:"notRun,omitempty"`
	Detail string        `json:"detail,omitempty"`
	Took   time.Duration `json:"took"`
}

// ErrGate is wrapped when a verification gate does not hold.
var ErrGate = errors.New("verification gate failed")

// Poll is how often a check is repeated until it holds.
const Poll = time.Second

// Check is one look: a detail when the gate holds, else why not.
type Check func(ctx context.Context) (string, error)

var errPermanent = errors.New("permanent")

// Permanent marks a failure polling will not fix: the gate fails at once.
func Permanent(err error) error { return fmt.Errorf("%w: %w", errPermanent, err) }

// Run polls check until it holds, fails permanently or limit passes (ctx
// may end it sooner: a Terraform resource's timeout). A gate that does not
// hold in time fails with what its last completed check saw.
func Run(ctx context.Context, log *slog.Logger, id, name string, limit time.Duration, check Check) Gate {
	start := time.Now()
	log.Info("Checking gate", "gate", name)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var detail string
	var err, seen error
	for {
		detail, err = check(ctx)
		if err != nil && ctx.Err() == nil {
			seen = err
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, errPermanent) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(Poll):
		}
	}
	g := Gate{ID: id, Name: name, OK: err == nil, Detail: detail, Took: time.Since(start)}
	switch {
	case err == nil:
	case ctx.Err() != nil && seen != nil:
		// The check cut short by the deadline says less than the last
		// one that completed.
		g.Detail = fmt.Sprintf("not within %v: %v", time.Since(start).Round(time.Second), seen)
	default:
		g.Detail = strings.TrimPrefix(err.Error(), errPermanent.Error()+": ")
	}
	return g
}

// Failed is ErrGate naming every gate that was checked and did not hold,
// or nil.
func Failed(gs []Gate) error {
	var failed []string
	for _, g := range gs {
		if !g.OK && g.NotRun == "" {
			failed = append(failed, g.Name+": "+g.Detail)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrGate, strings.Join(failed, "; "))
	}
	return nil
}

// Readyz asks one API URL for /readyz with hc (which trusts the cluster
// CA and authenticates).
func Readyz(ctx context.Context, hc *http.Client, server string) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, server+"/readyz", nil)
	if err != nil {
		return "", Permanent(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// NodeProblems lists why the observed nodes (health.Observe) do not match
// the inventory: missing, not Ready by the one health rule, or without
// their topology labels.
func NodeProblems(c *inventory.Cluster, nodes []health.Node) []string {
	var problems []string
	for _, nd := range nodes {
		h, ok := c.Host(nd.Name)
		if !ok {
			continue
		}
		if !nd.Registered {
			problems = append(problems, nd.Name+": not registered")
			continue
		}
		if !nd.Ready {
			problems = append(problems, nd.Name+": not Ready: "+nd.Reason)
		}
		want := map[string]string{addons.LabelRegion: h.Site.Name, addons.LabelZone: h.Center.Name, addons.LabelRack: h.Rack.Name}
		for k, v := range want {
			if nd.Labels[k] != v {
				problems = append(problems, fmt.Sprintf("%s: label %s=%q, want %q", nd.Name, k, nd.Labels[k], v))
			}
		}
	}
	sort.Strings(problems)
	return problems
}
