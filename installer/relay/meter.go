package relay

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
)

// Meter counts, per jump host, the file content the engine sends through
// it and the set: the distinct content (by sha256) that had to reach the
// servers behind it. Safe for concurrent use; the zero value is ready.
type Meter struct {
	mu sync.Mutex
	m  map[string]*jumpCount
}

type jumpCount struct {
	sent int64
	set  map[string]int64
}

func (m *Meter) get(jump string) *jumpCount {
	if m.m == nil {
		m.m = map[string]*jumpCount{}
	}
	c := m.m[jump]
	if c == nil {
		c = &jumpCount{set: map[string]int64{}}
		m.m[jump] = c
	}
	return c
}

// Sent adds n bytes sent through jump.
func (m *Meter) Sent(jump string, n int64) {
	m.mu.Lock()
	m.get(jump).sent += n
	m.mu.Unlock()
}

// Need records that a server behind jump needed the content sum of size
// bytes (counted once per jump host however many servers need it).
func (m *Meter) Need(jump, sum string, size int64) {
	m.mu.Lock()
	m.get(jump).set[sum] = size
	m.mu.Unlock()
}

// Report lists the counts by jump host name.
func (m *Meter) Report() []JumpBytes {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]JumpBytes, 0, len(m.m))
	for _, j := range slices.Sorted(maps.Keys(m.m)) {
		c := m.m[j]
		var set int64
		for _, n := range c.set {
			set += n
		}
		out = append(out, JumpBytes{Jump: j, Bytes: c.sent, Set: set, Files: len(c.set)})
	}
	return out
}

// JumpBytes is what went through one jump host in a run.
type JumpBytes struct {
	Jump string `json:"jump"`
	// Bytes is the file content sent through it.
	Bytes int64 `json:"bytes"`
	// Set is the size of the distinct content the servers behind it
	// needed, and Files how many distinct files that is.
	Set   int64 `json:"set"`
	Files int   `json:"files"`
}

// Ratio is Bytes over Set (0 when nothing was needed).
func (j JumpBytes) Ratio() float64 {
	if j.Set == 0 {
		return 0
	}
	return float64(j.Bytes) / float64(j.Set)
}

// String reads "bytes through jump host dc1-jump: 412.0 MiB (1.02× the
// set)".
func (j JumpBytes) String() string {
	if j.Set == 0 {
		return fmt.Sprintf("bytes through jump host %s: %s", j.Jump, progress.Bytes(j.Bytes))
	}
	return fmt.Sprintf("bytes through jump host %s: %s (%.2f× the set)", j.Jump, progress.Bytes(j.Bytes), j.Ratio())
}
