package relay_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/relay"
)

// TestSeedsOneSeedPerCenter: of many servers asking at once, one per
// center becomes the seed; the others wait for it and then get it.
func TestSeedsOneSeedPerCenter(t *testing.T) {
	var s relay.Seeds[string]
	ctx := context.Background()
	hosts := map[string][]string{"dc1": {"a1", "a2", "a3", "a4"}, "dc2": {"b1", "b2"}}
	type answer struct {
		center, host, src string
		mine              bool
		err               error
	}
	answers := make(chan answer, 6)
	var wg sync.WaitGroup
	for ctr, hs := range hosts {
		for _, h := range hs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src, mine, err := s.Claim(ctx, ctr, "sum", h)
				if mine {
					time.Sleep(20 * time.Millisecond) // the upload
					s.Settle(ctr, "sum", h, true)
				}
				answers <- answer{ctr, h, src, mine, err}
			}()
		}
	}
	wg.Wait()
	close(answers)
	seeds := map[string]string{}
	var got []answer
	for a := range answers {
		if a.err != nil {
			t.Fatalf("%s: %v", a.host, a.err)
		}
		if a.mine {
			if seeds[a.center] != "" {
				t.Errorf("%s has two seeds: %s and %s", a.center, seeds[a.center], a.host)
			}
			seeds[a.center] = a.host
		}
		got = append(got, a)
	}
	for _, a := range got {
		if !a.mine && a.src != seeds[a.center] {
			t.Errorf("%s in %s was sent to %q, want the seed %q", a.host, a.center, a.src, seeds[a.center])
		}
	}
	if len(seeds) != 2 {
		t.Errorf("seeds %v, want one per center", seeds)
	}
	// Once settled, a late asker gets the seed at once; the seed itself
	// asking again (its cache lost the file) seeds again.
	if src, mine, err := s.Claim(ctx, "dc2", "sum", "b9"); err != nil || mine || src != seeds["dc2"] {
		t.Errorf("late claim = %q %v %v, want the seed %q", src, mine, err, seeds["dc2"])
	}
	if src, mine, _ := s.Claim(ctx, "dc2", "sum", seeds["dc2"]); !mine || src != seeds["dc2"] {
		t.Errorf("the seed's own claim = %q mine %v, want it to seed again", src, mine)
	}
}

// TestSeedsFailureAndDrop: waiters of a seed that failed get
// ErrSeedFailed (they upload directly) and the next claim elects a new
// seed; Drop makes a settled seed's center elect again; a waiter whose
// context ends stops waiting.
func TestSeedsFailureAndDrop(t *testing.T) {
	var s relay.Seeds[string]
	ctx := context.Background()
	if _, mine, _ := s.Claim(ctx, "dc1", "x", "a"); !mine {
		t.Fatal("the first claim is not the seed")
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := s.Claim(ctx, "dc1", "x", "b")
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Settle("dc1", "x", "a", false)
	if err := <-errc; !errors.Is(err, relay.ErrSeedFailed) {
		t.Errorf("waiter of a failed seed: %v, want ErrSeedFailed", err)
	}
	if src, mine, err := s.Claim(ctx, "dc1", "x", "c"); !mine || src != "c" || err != nil {
		t.Errorf("claim after a failure = %q %v %v, want c to seed", src, mine, err)
	}
	s.Settle("dc1", "x", "c", true)
	s.Drop("dc1", "x", "someone-else")
	if src, _, _ := s.Claim(ctx, "dc1", "x", "d"); src != "c" {
		t.Errorf("Drop of another host changed the seed to %q", src)
	}
	s.Drop("dc1", "x", "c")
	if src, mine, _ := s.Claim(ctx, "dc1", "x", "d"); !mine || src != "d" {
		t.Errorf("claim after Drop = %q mine %v, want d to seed", src, mine)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, _, err := s.Claim(cctx, "dc1", "x", "e"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter with an ended context: %v", err)
	}
}

// TestMeter: bytes add up per jump host, the set counts each digest once.
func TestMeter(t *testing.T) {
	var m relay.Meter
	m.Need("dc1-jump", "a", 100<<20)
	m.Need("dc1-jump", "a", 100<<20)
	m.Need("dc1-jump", "b", 300<<20)
	m.Sent("dc1-jump", 408<<20)
	m.Sent("dc2-jump", 5)
	r := m.Report()
	if len(r) != 2 || r[0].Jump != "dc1-jump" || r[0].Set != 400<<20 || r[0].Files != 2 || r[1].Set != 0 {
		t.Fatalf("Report = %+v", r)
	}
	if got, want := r[0].String(), "bytes through jump host dc1-jump: 408.0 MiB (1.02× the set)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := r[1].String(); got != "bytes through jump host dc2-jump: 5 B" {
		t.Errorf("String without a set = %q", got)
	}
}
