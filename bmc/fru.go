package bmc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
)

// FRU is the inventory data of FRU device 0 (IPMI Platform Management FRU
// Information Storage Definition v1.0): the chassis, board and product
// info areas.
type FRU struct {
	ChassisType       uint8  `json:"chassisType,omitempty"`
	ChassisPartNumber string `json:"chassisPartNumber,omitempty"`
	ChassisSerial     string `json:"chassisSerial,omitempty"`

	BoardMfgTime      *time.Time `json:"boardMfgTime,omitempty"`
	BoardManufacturer string     `json:"boardManufacturer,omitempty"`
	BoardProduct      string     `json:"boardProduct,omitempty"`
	BoardSerial       string     `json:"boardSerial,omitempty"`
	BoardPartNumber   string     `json:"boardPartNumber,omitempty"`

	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	PartNumber   string `json:"partNumber,omitempty"`
	Version      string `json:"version,omitempty"`
	Serial       string `json:"serial,omitempty"`
	AssetTag     string `json:"assetTag,omitempty"`

	// Problems lists damage found while decoding (bad area checksums,
	// truncated areas); the fields that could be read are still set.
	Problems []string `json:"problems,omitempty"`
}

// errFRU is wrapped by every FRU decoding error.
var errFRU = errors.New("invalid FRU data")

var fruEpoch = time.Date(1996, 1, 1, 0, 0, 0, 0, time.UTC)

// DecodeFRU decodes a FRU image. A bad common header is an error; damage
// inside an area is reported in FRU.Problems.
func DecodeFRU(b []byte) (FRU, error) {
	var f FRU
	if len(b) < 8 {
		return f, fmt.Errorf("%w: %d bytes, shorter than the 8-byte common header", errFRU, len(b))
	}
	if b[0]&0x0f != 1 {
		return f, fmt.Errorf("%w: common header format version %d, expected 1", errFRU, b[0]&0x0f)
	}
	if sum(b[:8]) != 0 {
		return f, fmt.Errorf("%w: common header checksum mismatch", errFRU)
	}
	if off := int(b[2]) * 8; off != 0 {
		if a, ok := f.area(b, off, "chassis"); ok && len(a) >= 1 {
			f.ChassisType = a[0]
			fs := f.fields(a[1:], "chassis", 2)
			f.ChassisPartNumber, f.ChassisSerial = fs[0], fs[1]
		}
	}
	if off := int(b[3]) * 8; off != 0 {
		if a, ok := f.area(b, off, "board"); ok && len(a) >= 4 {
			if mins := uint32(a[1]) | uint32(a[2])<<8 | uint32(a[3])<<16; mins != 0 {
				t := fruEpoch.Add(time.Duration(mins) * time.Minute)
				f.BoardMfgTime = &t
			}
			fs := f.fields(a[4:], "board", 4)
			f.BoardManufacturer, f.BoardProduct, f.BoardSerial, f.BoardPartNumber = fs[0], fs[1], fs[2], fs[3]
		}
	}
	if off := int(b[4]) * 8; off != 0 {
		if a, ok := f.area(b, off, "product"); ok && len(a) >= 1 {
			fs := f.fields(a[1:], "product", 6)
			f.Manufacturer, f.Product, f.PartNumber, f.Version, f.Serial, f.AssetTag = fs[0], fs[1], fs[2], fs[3], fs[4], fs[5]
		}
	}
	return f, nil
}

// area returns the bytes of an info area after its version and length
// bytes (checksum excluded).
func (f *FRU) area(b []byte, off int, name string) ([]byte, bool) {
	if off+2 > len(b) {
		f.Problems = append(f.Problems, fmt.Sprintf("%s area offset %d is past the end of the data (%d bytes)", name, off, len(b)))
		return nil, false
	}
	if b[off]&0x0f != 1 {
		f.Problems = append(f.Problems, fmt.Sprintf("%s area format version %d, expected 1", name, b[off]&0x0f))
		return nil, false
	}
	n := int(b[off+1]) * 8
	if n < 3 {
		f.Problems = append(f.Problems, fmt.Sprintf("%s area length %d is too short", name, n))
		return nil, false
	}
	if off+n > len(b) {
		f.Problems = append(f.Problems, fmt.Sprintf("%s area is truncated (%d of %d bytes)", name, len(b)-off, n))
		n = len(b) - off
	} else if sum(b[off:off+n]) != 0 {
		f.Problems = append(f.Problems, name+" area checksum mismatch")
	}
	return b[off+2 : off+n], true
}

// fields decodes up to want type/length fields; missing ones are "".
func (f *FRU) fields(b []byte, name string, want int) []string {
	out := make([]string, want)
	for i := 0; i < want; i++ {
		if len(b) == 0 {
			f.Problems = append(f.Problems, fmt.Sprintf("%s area ends before field %d", name, i+1))
			return out
		}
		tl := b[0]
		if tl == 0xC1 { // end of fields
			return out
		}
		n := int(tl & 0x3f)
		if 1+n > len(b) {
			f.Problems = append(f.Problems, fmt.Sprintf("%s area field %d is truncated", name, i+1))
			return out
		}
		out[i] = decodeTypeLength(tl>>6, b[1:1+n])
		b = b[1+n:]
	}
	return out
}

// decodeTypeLength decodes a type/length field body: 0 binary, 1 BCD
// plus, 2 6-bit packed ASCII, 3 8-bit ASCII (language English).
func decodeTypeLength(typ byte, b []byte) string {
	switch typ {
	case 0:
		return hex.EncodeToString(b)
	case 1:
		const digits = "0123456789 -.:,_"
		var s strings.Builder
		for _, x := range b {
			s.WriteByte(digits[x>>4])
			s.WriteByte(digits[x&0x0f])
		}
		return strings.TrimSpace(s.String())
	case 2:
		return cleanString(unpack6bit(b))
	}
	return cleanString(string(b))
}

// unpack6bit decodes IPMI 6-bit packed ASCII: four characters in three
// bytes, least significant bits first, each character plus 0x20.
func unpack6bit(b []byte) string {
	var s strings.Builder
	var acc uint32
	bits := 0
	for _, x := range b {
		acc |= uint32(x) << bits
		bits += 8
		for bits >= 6 {
			s.WriteByte(byte(acc&0x3f) + 0x20)
			acc >>= 6
			bits -= 6
		}
	}
	return s.String()
}

// cleanString drops padding and replaces what is not printable ASCII.
func cleanString(s string) string {
	s = strings.TrimRight(s, "\x00 ")
	s = strings.TrimLeft(s, " ")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

func sum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return s
}

// FRU reads and decodes FRU device 0.
func (c *Client) FRU(ctx context.Context) (FRU, error) {
	var f FRU
	err := c.do(ctx, "reading FRU", func(ctx context.Context, conn *client.Client) error {
		raw, err := conn.GetFRUData(ctx, 0)
		if err != nil {
			return classify("Read FRU Data (device 0)", err)
		}
		f, err = DecodeFRU(raw)
		return err
	})
	return f, err
}

// Facts are the per-server hardware facts that become node labels.
type Facts struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	Serial       string `json:"serial,omitempty"`
}

// Facts picks the server's manufacturer, model and serial: the product
// area first, then the board, then the chassis.
func (f FRU) Facts() Facts {
	return Facts{
		Manufacturer: first(f.Manufacturer, f.BoardManufacturer),
		Model:        first(f.Product, f.BoardProduct),
		Serial:       first(f.Serial, f.BoardSerial, f.ChassisSerial),
	}
}

func first(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// Label keys the facts become.
const (
	LabelManufacturer = "tricenter.io/manufacturer"
	LabelModel        = "tricenter.io/model"
	LabelSerial       = "tricenter.io/serial"
)

// Labels turns the facts into Kubernetes node labels; values are made
// valid label values and empty ones are left out.
func (f Facts) Labels() map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{LabelManufacturer: f.Manufacturer, LabelModel: f.Model, LabelSerial: f.Serial} {
		if lv := LabelValue(v); lv != "" {
			out[k] = lv
		}
	}
	return out
}

// LabelValue maps s to a valid Kubernetes label value: at most 63
// characters of [A-Za-z0-9_.-], starting and ending with an alphanumeric.
// Other characters become '_' ("PowerEdge R640" -> "PowerEdge_R640").
func LabelValue(s string) string {
	b := []byte(strings.TrimSpace(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for len(b) > 0 && !alnum(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && !alnum(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return string(b)
}
