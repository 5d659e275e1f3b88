package etcd

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestDataButNoAnswer: members hold data and none answers. After a
// completed apply of this state the run stops, naming every server with
// data; before one it continues its own interrupted bootstrap.
func TestDataButNoAnswer(t *testing.T) {
	plan := []inventory.Member{{Name: "a", Center: "dc1"}, {Name: "b", Center: "dc2"}, {Name: "c", Center: "dc3"}}
	newRun := func(prior *inventory.Prior) *run {
		r := &run{o: Options{Prior: prior}, log: slog.New(slog.DiscardHandler), plan: plan,
			byName: map[string]inventory.Member{}, facts: map[string]*Facts{}, res: &Result{}}
		for _, m := range plan {
			r.byName[m.Name] = m
		}
		r.facts["a"] = &Facts{HasData: true, Active: true}
		r.facts["b"] = &Facts{HasData: true}
		r.facts["c"] = &Facts{}
		return r
	}
	listErr := errors.New("context deadline exceeded")

	r := newRun(&inventory.Prior{EtcdMembers: []string{"a", "b", "c"}})
	err := r.dataButNoAnswer(true, listErr)
	if !errors.Is(err, ErrDataUnreachable) {
		t.Fatalf("after a completed apply: %v, want ErrDataUnreachable", err)
	}
	for _, w := range []string{"a (running)", "b (stopped)", "context deadline exceeded", "systemctl start etcd", "nothing was changed"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), "c (") {
		t.Errorf("a server without data is named: %v", err)
	}

	for _, prior := range []*inventory.Prior{nil, {}} {
		r = newRun(prior)
		if err := r.dataButNoAnswer(true, listErr); err != nil {
			t.Errorf("interrupted bootstrap (prior %+v): %v", prior, err)
		}
		if r.res.Bootstrap {
			t.Errorf("interrupted bootstrap with data: Bootstrap set (would run a new cluster's bootstrap over data)")
		}
	}

	r = newRun(&inventory.Prior{EtcdMembers: []string{"a"}})
	for _, f := range r.facts {
		f.HasData = false
	}
	if err := r.dataButNoAnswer(true, listErr); err != nil || !r.res.Bootstrap {
		t.Errorf("running without data yet: %v, bootstrap %v; want a bootstrap going on", err, r.res.Bootstrap)
	}
}
