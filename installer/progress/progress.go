// Package progress renders what the installer does for people: a header
// per phase ("==> title"), one line per host event ("node1: message") and a
// byte progress bar for uploads, redrawn in place on a terminal and printed
// as periodic lines otherwise. The library reports through the Reporter
// interface; Discard drops everything.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Reporter receives progress events. Implementations are safe for
// concurrent use.
type Reporter interface {
	PhaseStart(title string, hosts int)
	PhaseDone(title string, err error, elapsed time.Duration)
	Host(host, msg string)
	UploadStart(host, file string, size int64)
	UploadBytes(n int64)
	UploadDone(host, file string, err error)
}

// Discard is a Reporter that reports nothing.
var Discard Reporter = discard{}

type discard struct{}

func (discard) PhaseStart(string, int)                 {}
func (discard) PhaseDone(string, error, time.Duration) {}
func (discard) Host(string, string)                    {}
func (discard) UploadStart(string, string, int64)      {}
func (discard) UploadBytes(int64)                      {}
func (discard) UploadDone(string, string, error)       {}

// Printer writes progress for people to w.
type Printer struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	now      func() time.Time

	mu       sync.Mutex
	total    int64 // bytes of the uploads started
	done     int64 // bytes sent
	active   int
	started  time.Time
	lastDraw time.Time
	barShown bool
}

// NewPrinter returns a Printer. On a terminal (tty) the upload bar is
// redrawn in place at most every 100 ms; otherwise a progress line is
// printed every 5 s while uploads run.
func NewPrinter(w io.Writer, tty bool) *Printer {
	iv := 5 * time.Second
	if tty {
		iv = 100 * time.Millisecond
	}
	return &Printer{w: w, tty: tty, interval: iv, now: time.Now}
}

func (p *Printer) clearBar() {
	if p.tty && p.barShown {
		fmt.Fprint(p.w, "\r\033[K")
		p.barShown = false
	}
}

func (p *Printer) line(s string) {
	p.clearBar()
	fmt.Fprintln(p.w, s)
	if p.tty && p.active > 0 {
		p.draw()
	}
}

// PhaseStart prints "==> title (N hosts)".
func (p *Printer) PhaseStart(title string, hosts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(fmt.Sprintf("==> %s (%d %s)", title, hosts, plural(hosts, "host", "hosts")))
}

// PhaseDone prints the phase's outcome and duration.
func (p *Printer) PhaseDone(title string, err error, elapsed time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.line(fmt.Sprintf("==> %s failed after %s", title, elapsed.Round(10*time.Millisecond)))
		return
	}
	p.line(fmt.Sprintf("==> %s done in %s", title, elapsed.Round(10*time.Millisecond)))
}

// Host prints "host: msg".
func (p *Printer) Host(host, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(fmt.Sprintf("  %s: %s", host, msg))
}

// UploadStart adds an upload to the bar.
func (p *Printer) UploadStart(host, file string, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active == 0 {
		p.total, p.done, p.started = 0, 0, p.now()
	}
	p.active++
	p.total += size
}

// UploadBytes advances the bar.
func (p *Printer) UploadBytes(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if t := p.now(); t.Sub(p.lastDraw) >= p.interval {
		p.lastDraw = t
		if p.tty {
			p.draw()
		} else {
			fmt.Fprintln(p.w, "  "+p.status())
		}
	}
}

// UploadDone removes an upload from the bar.
func (p *Printer) UploadDone(host, file string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active--
	if p.active <= 0 {
		p.active = 0
		p.clearBar()
	}
}

func (p *Printer) draw() {
	fmt.Fprint(p.w, "\r\033[K"+p.status())
	p.barShown = true
}

func (p *Printer) status() string {
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	if frac > 1 {
		frac = 1
	}
	fill := int(frac * width)
	rate := 0.0
	if el := p.now().Sub(p.started).Seconds(); el > 0 {
		rate = float64(p.done) / el
	}
	return fmt.Sprintf("uploading [%s%s] %s / %s %3.0f%% %s/s, %d %s",
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		Bytes(p.done), Bytes(p.total), frac*100, Bytes(int64(rate)), p.active, plural(p.active, "file", "files"))
}

// Bytes formats a byte count with binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
