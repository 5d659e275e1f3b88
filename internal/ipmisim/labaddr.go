package ipmisim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// LabBlock is the lab's BMC block. Simulated BMCs listen on LabAddr
// addresses, which LabAddrs configures on an interface of this machine.
var LabBlock = netip.MustParsePrefix("198.18.48.0/20")

// labBlockSize is how many indices LabAddr accepts: 254 per /24 (.1 to
// .254) in the 16 /24s of LabBlock.
const labBlockSize = 16 * 254

// LabAddr is the i-th BMC address of LabBlock: 198.18.48.1 to
// 198.18.48.254, then 198.18.49.1 to .254, and so on up to 198.18.63.254
// (i from 0 to 4063). Index 254*k+j is 198.18.(48+k).(1+j), so each /24
// is a block of 254 indices that one test package can own.
func LabAddr(i int) (netip.Addr, error) {
	if i < 0 || i >= labBlockSize {
		return netip.Addr{}, fmt.Errorf("ipmisim: BMC index %d is outside 0-%d", i, labBlockSize-1)
	}
	return netip.AddrFrom4([4]byte{198, 18, byte(48 + i/254), byte(1 + i%254)}), nil
}

// LabAvailable reports why lab addresses cannot be configured here, or nil.
func LabAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("lab BMC addresses are configured on a network interface, which needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip is not installed: run make deps (Debian package iproute2)")
	}
	return nil
}

// linkPrefix starts the name of every interface LabAddrs creates; the
// creator's pid follows (base 36), then a random suffix.
const linkPrefix = "tcbmc"

// LabAddrs makes the addresses LabAddr(i), for each index, exist on this
// machine: it creates a new interface in the root network namespace
// (type dummy, or a bridge without ports where the kernel has no dummy
// driver), adds the addresses as /32 and sets it up. Traffic to them is
// delivered locally (the kernel's local routing table); no route is added
// and nothing reaches another machine. An index with no listener is a BMC
// that does not exist: datagrams sent there are refused at once.
//
// closeFn deletes the interface and its addresses; it is safe to call more
// than once. Interfaces left behind by a process that died without calling
// close are deleted by the next call.
func LabAddrs(ctx context.Context, idxs ...int) (addrs []netip.Addr, closeFn func() error, err error) {
	if err := LabAvailable(); err != nil {
		return nil, nil, err
	}
	if len(idxs) == 0 {
		return nil, nil, errors.New("ipmisim: LabAddrs needs at least one index")
	}
	seen := map[int]bool{}
	for _, i := range idxs {
		a, err := LabAddr(i)
		if err != nil {
			return nil, nil, err
		}
		if seen[i] {
			return nil, nil, fmt.Errorf("ipmisim: BMC index %d is given twice", i)
		}
		seen[i] = true
		addrs = append(addrs, a)
	}
	removeOrphanLinks(ctx)

	name, err := linkName()
	if err != nil {
		return nil, nil, err
	}
	var addErrs []error
	created := false
	for _, kind := range []string{"dummy", "bridge"} {
		out, err := exec.CommandContext(ctx, "ip", "link", "add", name, "type", kind).CombinedOutput()
		if err == nil {
			created = true
			break
		}
		addErrs = append(addErrs, fmt.Errorf("type %s: %w: %s", kind, err, strings.TrimSpace(string(out))))
	}
	if !created {
		return nil, nil, fmt.Errorf("ipmisim: creating interface %s: %w", name, errors.Join(addErrs...))
	}
	closeFn = sync.OnceValue(func() error {
		out, err := exec.Command("ip", "link", "del", name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ipmisim: deleting interface %s: %w: %s", name, err, strings.TrimSpace(string(out)))
		}
		return nil
	})

	// One ip process for every address: 200 addresses take milliseconds.
	// addrgenmode none: no IPv6 link-local address, so the interface
	// never sends anything of its own.
	var batch strings.Builder
	fmt.Fprintf(&batch, "link set %s addrgenmode none\n", name)
	for _, a := range addrs {
		fmt.Fprintf(&batch, "addr add %s/32 dev %s\n", a, name)
	}
	fmt.Fprintf(&batch, "link set %s up\n", name)
	cmd := exec.CommandContext(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = closeFn()
		return nil, nil, fmt.Errorf("ipmisim: adding %d addresses to %s: %w: %s", len(addrs), name, err, strings.TrimSpace(string(out)))
	}
	return addrs, closeFn, nil
}

// linkName is "tcbmc" + this process's pid in base 36 + "-" + 4 random
// hex digits: at most 15 bytes, the kernel's limit, and unique per call.
func linkName() (string, error) {
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s%s-%04x", linkPrefix, strconv.FormatInt(int64(os.Getpid()), 36), binary.BigEndian.Uint16(r[:])), nil
}

// removeOrphanLinks deletes the interfaces LabAddrs created in processes
// that no longer exist (a test binary killed on timeout). Interfaces of
// live processes, and every other interface, are left alone.
func removeOrphanLinks(ctx context.Context) {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), linkPrefix)
		if !ok {
			continue
		}
		pidPart, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.ParseInt(pidPart, 36, 32)
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(int(pid), 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		_ = exec.CommandContext(ctx, "ip", "link", "del", e.Name()).Run()
	}
}
