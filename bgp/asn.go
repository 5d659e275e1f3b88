package bgp

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// ASN ranges (RFC 6996, RFC 7300).
const (
	private2Lo = 64512
	private2Hi = 65534
	private4Lo = 4200000000
	private4Hi = 4294967294
)

// asnSpace returns how many low bits of an address a derived ASN keeps for
// the given base: the largest k with base + 2^k - 1 inside the base's range.
func asnSpace(base uint32) (int, error) {
	var top uint32
	switch {
	case base == 0:
		return 0, fmt.Errorf("is 0: use a private ASN such as %d", private4Lo)
	case base <= private2Hi:
		top = private2Hi
	case base <= private4Hi:
		top = private4Hi
	default:
		return 0, fmt.Errorf("is %d, above the last usable ASN %d", base, private4Hi)
	}
	span := uint64(top) - uint64(base) + 1
	k := bits.Len64(span) - 1
	if k > 32 {
		k = 32
	}
	return k, nil
}

// deriveASN maps v (an address or network number) to base + (v mod 2^k).
func deriveASN(base uint32, k int, v uint32) uint32 {
	if k >= 32 {
		return base + v
	}
	return base + v&(1<<uint(k)-1)
}

// rackNumber is the rack subnet's network number: its address shifted
// right by its host bits.
func rackNumber(p netip.Prefix) uint32 {
	return u32(p.Masked().Addr()) >> uint(32-p.Bits())
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// isPrivateASN reports whether asn is in a private range.
func isPrivateASN(asn uint32) bool {
	return (asn >= private2Lo && asn <= private2Hi) || (asn >= private4Lo && asn <= private4Hi)
}
