package nspawn

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// Delayer is a userspace link emulator: the router namespace sends
// packets that cross between centers into a TUN device; the delayer reads
// each one, holds it for half the round-trip time configured between its
// source and destination, and writes it back, preserving order per pair of
// centers. It stands in for netem, which this kernel lacks.
type Delayer struct {
	f      *os.File
	Name   string
	zones  []zone
	oneWay map[[2]int]time.Duration
	log    *slog.Logger

	mu     sync.Mutex
	queues map[[2]int]chan packet
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	// Counters, read with Stats.
	statMu              sync.Mutex
	delayed, passed     uint64
	dropped, writeFails uint64
}

type zone struct {
	prefix netip.Prefix
	center int
}

type packet struct {
	b  []byte
	at time.Time
}

// DelayStats counts what the delayer did.
type DelayStats struct {
	Delayed, Passed, Dropped, WriteFailures uint64
}

// queueLen bounds each pair's in-flight packets (a 20 ms RTT at 1 Gbit/s is
// about 1,700 full-size packets).
const queueLen = 8192

// newDelayer creates TUN device name inside the network namespace at
// nsPath. zones maps subnets to center indexes; rtt gives the round-trip
// time between two centers (symmetric).
func newDelayer(nsPath, name string, zones []zone, rtt map[[2]int]time.Duration, log *slog.Logger) (*Delayer, error) {
	fd, err := openTUNIn(nsPath, name)
	if err != nil {
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Delayer{
		f: os.NewFile(uintptr(fd), "/dev/net/tun"), Name: name, zones: zones,
		oneWay: map[[2]int]time.Duration{}, log: log, queues: map[[2]int]chan packet{},
		ctx: ctx, cancel: cancel,
	}
	for k, v := range rtt {
		d.oneWay[k] = v / 2
		d.oneWay[[2]int{k[1], k[0]}] = v / 2
	}
	return d, nil
}

// openTUNIn creates a TUN device in another network namespace: the thread
// enters the namespace, opens the device (which is created in the thread's
// namespace) and returns. The file descriptor keeps working from anywhere.
func openTUNIn(nsPath, name string) (int, error) {
	fd := -1
	err := labnet.InNamespace(nsPath, func() error {
		f, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(f, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(f)
			return err
		}
		fd = f
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

func (d *Delayer) centerOf(a netip.Addr) int {
	for _, z := range d.zones {
		if z.prefix.Contains(a) {
			return z.center
		}
	}
	return -1
}

// Start reads and forwards packets until Close.
func (d *Delayer) Start() {
	d.wg.Add(1)
	go d.readLoop()
}

func (d *Delayer) readLoop() {
	defer d.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := d.f.Read(buf)
		if err != nil {
			if d.ctx.Err() == nil {
				d.log.Warn("Delayer read failed", "tun", d.Name, "err", err)
			}
			return
		}
		now := time.Now()
		if n < 20 || buf[0]>>4 != 4 {
			d.write(buf[:n])
			d.count(&d.passed)
			continue
		}
		src, _ := netip.AddrFromSlice(buf[12:16])
		dst, _ := netip.AddrFromSlice(buf[16:20])
		key := [2]int{d.centerOf(src), d.centerOf(dst)}
		delay := d.oneWay[key]
		if delay <= 0 {
			d.write(buf[:n])
			d.count(&d.passed)
			continue
		}
		q := d.queue(key)
		select {
		case q <- packet{b: append([]byte(nil), buf[:n]...), at: now.Add(delay)}:
			d.count(&d.delayed)
		default:
			d.count(&d.dropped) // queue full: behave like a full link
		}
	}
}

func (d *Delayer) queue(key [2]int) chan packet {
	d.mu.Lock()
	defer d.mu.Unlock()
	q, ok := d.queues[key]
	if !ok {
		q = make(chan packet, queueLen)
		d.queues[key] = q
		d.wg.Add(1)
		go d.release(q)
	}
	return q
}

func (d *Delayer) release(q chan packet) {
	defer d.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case p := <-q:
			if w := time.Until(p.at); w > 0 {
				t.Reset(w)
				select {
				case <-d.ctx.Done():
					return
				case <-t.C:
				}
			}
			d.write(p.b)
		}
	}
}

func (d *Delayer) write(b []byte) {
	if _, err := d.f.Write(b); err != nil && d.ctx.Err() == nil {
		d.count(&d.writeFails)
	}
}

func (d *Delayer) count(c *uint64) {
	d.statMu.Lock()
	*c++
	d.statMu.Unlock()
}

// Stats returns the counters.
func (d *Delayer) Stats() DelayStats {
	d.statMu.Lock()
	defer d.statMu.Unlock()
	return DelayStats{Delayed: d.delayed, Passed: d.passed, Dropped: d.dropped, WriteFailures: d.writeFails}
}

// Close stops forwarding and removes the TUN device.
func (d *Delayer) Close() error {
	d.cancel()
	err := d.f.Close()
	d.wg.Wait()
	return err
}
