package ipmisim

import (
	"errors"
	"fmt"
	"time"
)

// FRUSize is the size of the FRU image handed to ipmi_sim.
const FRUSize = 256

// FRU is what the simulated BMC reports in FRU device 0: a chassis, a board
// and a product area, as in IPMI Platform Management FRU Information
// Storage Definition v1.0.
type FRU struct {
	ChassisType       uint8 // SMBIOS chassis type; 0x17 (rack mount) when zero
	ChassisPartNumber string
	ChassisSerial     string

	BoardMfgTime      time.Time // zero: unspecified
	BoardManufacturer string
	BoardProduct      string
	BoardSerial       string
	BoardPartNumber   string

	Manufacturer string
	Product      string
	PartNumber   string // "part/model number"
	Version      string
	Serial       string
	AssetTag     string
}

// fruEpoch is the origin of the board manufacturing date: minutes since
// 1996-01-01 00:00 UTC.
var fruEpoch = time.Date(1996, 1, 1, 0, 0, 0, 0, time.UTC)

// EncodeFRU builds a FRUSize-byte FRU image with 8-bit ASCII fields. It
// fails when a field is longer than 63 bytes or the areas do not fit.
func EncodeFRU(f FRU) ([]byte, error) {
	ct := f.ChassisType
	if ct == 0 {
		ct = 0x17
	}
	chassis, err := area([]byte{ct}, f.ChassisPartNumber, f.ChassisSerial)
	if err != nil {
		return nil, fmt.Errorf("chassis area: %w", err)
	}
	var mins uint32
	if !f.BoardMfgTime.IsZero() {
		mins = uint32(f.BoardMfgTime.Sub(fruEpoch) / time.Minute)
	}
	board, err := area([]byte{0x19, byte(mins), byte(mins >> 8), byte(mins >> 16)}, // 0x19: English
		f.BoardManufacturer, f.BoardProduct, f.BoardSerial, f.BoardPartNumber, "" /* FRU file ID */)
	if err != nil {
		return nil, fmt.Errorf("board area: %w", err)
	}
	product, err := area([]byte{0x19},
		f.Manufacturer, f.Product, f.PartNumber, f.Version, f.Serial, f.AssetTag, "" /* FRU file ID */)
	if err != nil {
		return nil, fmt.Errorf("product area: %w", err)
	}
	img := make([]byte, 8, FRUSize)
	off := 1 // in multiples of 8 bytes
	img[0] = 0x01
	img[2] = byte(off)
	off += len(chassis) / 8
	img[3] = byte(off)
	off += len(board) / 8
	img[4] = byte(off)
	img[7] = checksum(img[:7])
	img = append(img, chassis...)
	img = append(img, board...)
	img = append(img, product...)
	if len(img) > FRUSize {
		return nil, fmt.Errorf("FRU image needs %d bytes, more than %d: shorten the fields", len(img), FRUSize)
	}
	return img[:FRUSize], nil
}

// area encodes an info area: version, length, the fixed bytes, each field
// as an 8-bit ASCII type/length byte, the end marker 0xC1, padding to a
// multiple of 8 and a zero checksum.
func area(fixed []byte, fields ...string) ([]byte, error) {
	b := []byte{0x01, 0}
	b = append(b, fixed...)
	for _, s := range fields {
		if len(s) > 63 {
			return nil, fmt.Errorf("field %q is longer than 63 bytes", s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return nil, errors.New("fields must be printable ASCII")
			}
		}
		b = append(b, 0xC0|byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, 0xC1)
	for (len(b)+1)%8 != 0 {
		b = append(b, 0)
	}
	b = append(b, 0)
	b[1] = byte(len(b) / 8)
	b[len(b)-1] = checksum(b[:len(b)-1])
	return b, nil
}

func checksum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return -s
}
