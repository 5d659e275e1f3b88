package bmc

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
)

func TestDecodeFRURoundTrip(t *testing.T) {
	in := ipmisim.FRU{
		Manufacturer: "Acme", Product: "Rack 9", PartNumber: "R9-01", Version: "v2", Serial: "XYZ123", AssetTag: "tag 7",
		BoardManufacturer: "Acme Boards", BoardProduct: "MB-9", BoardSerial: "B-1", BoardPartNumber: "MB9",
		ChassisType: 0x17, ChassisPartNumber: "CH-1", ChassisSerial: "C-1",
		BoardMfgTime: time.Date(2023, 5, 6, 7, 8, 0, 0, time.UTC),
	}
	img, err := ipmisim.EncodeFRU(in)
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecodeFRU(img)
	if err != nil {
		t.Fatal(err)
	}
	if f.Manufacturer != in.Manufacturer || f.Product != in.Product || f.PartNumber != in.PartNumber ||
		f.Version != in.Version || f.Serial != in.Serial || f.AssetTag != in.AssetTag ||
		f.BoardManufacturer != in.BoardManufacturer || f.BoardProduct != in.BoardProduct ||
		f.BoardSerial != in.BoardSerial || f.BoardPartNumber != in.BoardPartNumber ||
		f.ChassisType != 0x17 || f.ChassisPartNumber != in.ChassisPartNumber || f.ChassisSerial != in.ChassisSerial {
		t.Errorf("decoded %+v", f)
	}
	if f.BoardMfgTime == nil || !f.BoardMfgTime.Equal(in.BoardMfgTime) {
		t.Errorf("board time %v", f.BoardMfgTime)
	}
	if len(f.Problems) != 0 {
		t.Errorf("problems %q", f.Problems)
	}
}

func TestDecodeFRUDamage(t *testing.T) {
	img, _ := ipmisim.EncodeFRU(ipmisim.FRU{Manufacturer: "Acme", Product: "P", Serial: "S1"})
	if _, err := DecodeFRU(img[:5]); !errors.Is(err, errFRU) {
		t.Errorf("short: %v", err)
	}
	bad := append([]byte(nil), img...)
	bad[7]++
	if _, err := DecodeFRU(bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("header checksum: %v", err)
	}
	// Corrupt a byte inside the product area: decoded, with a problem.
	bad = append([]byte(nil), img...)
	off := int(bad[4]) * 8
	bad[off+4] ^= 0x20 // 'A' of "Acme" becomes 'a'
	f, err := DecodeFRU(bad)
	if err != nil {
		t.Fatal(err)
	}
	if f.Manufacturer != "acme" || len(f.Problems) != 1 || !strings.Contains(f.Problems[0], "product area checksum") {
		t.Errorf("got %q, problems %q", f.Manufacturer, f.Problems)
	}
	// Truncated image: the product area is cut.
	f, err = DecodeFRU(img[:off+6])
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Problems) == 0 {
		t.Error("truncation not reported")
	}
}

func TestTypeLengthEncodings(t *testing.T) {
	// "IPMI" in 6-bit packed ASCII: I=0x29 P=0x30 M=0x2d I=0x29.
	v := uint32(0x29) | 0x30<<6 | 0x2d<<12 | 0x29<<18
	if got := decodeTypeLength(2, []byte{byte(v), byte(v >> 8), byte(v >> 16)}); got != "IPMI" {
		t.Errorf("6-bit: %q", got)
	}
	if got := decodeTypeLength(1, []byte{0x12, 0x3b}); got != "123-" {
		t.Errorf("BCD plus: %q", got)
	}
	if got := decodeTypeLength(0, []byte{0xde, 0xad}); got != "dead" {
		t.Errorf("binary: %q", got)
	}
	if got := decodeTypeLength(3, []byte("ab\x01 \x00")); got != "ab?" {
		t.Errorf("8-bit: %q", got)
	}
}

// fullSDR builds a full sensor record like sdrcomp does.
func fullSDR(num uint8, name string, m, b, rexp, bexp int, format uint8, unit uint8) []byte {
	r := make([]byte, 48)
	r[0], r[1], r[2], r[3] = num, 0, 0x51, sdrFullSensor
	r[5], r[7] = 0x20, num
	r[8], r[9] = 7, 1
	r[12], r[13] = 0x01, 0x01
	r[20] = format << 6
	r[21] = unit
	r[24], r[25] = byte(m), byte((m>>8)&3)<<6
	r[26], r[27] = byte(b), byte((b>>8)&3)<<6
	r[29] = byte(rexp&0xf)<<4 | byte(bexp&0xf)
	r[47] = 0xC0 | byte(len(name))
	r = append(r, name...)
	r[4] = byte(len(r) - 5)
	return r
}

func TestDecodeSDRAndConvert(t *testing.T) {
	cases := []struct {
		rec  []byte
		raw  uint8
		want float64
	}{
		{fullSDR(1, "Inlet Temp", 1, 0, 0, 0, 0, 1), 24, 24},
		{fullSDR(2, "Fan", 50, 0, 0, 0, 0, 18), 96, 4800},
		{fullSDR(3, "12V", 6, 0, -2, 0, 0, 4), 200, 12},
		{fullSDR(4, "Offset", 2, -5, 0, 1, 0, 1), 10, -30},      // 2*10 + (-5)*10
		{fullSDR(5, "Signed", 1, 0, 0, 0, 2, 1), 0xF6, -10},     // two's complement
		{fullSDR(6, "Ones", 1, 0, 0, 0, 1, 1), 0xF5, -10},       // one's complement
		{fullSDR(7, "Neg M", -3, 0, -1, 0, 0, 5), 10, -3},       // negative 10-bit M
		{fullSDR(8, "Big M", 511, 0, -3, 0, 0, 6), 2, 1.022},    // largest M
		{fullSDR(9, "B exp", 1, 3, 0, -1, 0, 6), 0, 0.3},        // B * 10^-1
		{fullSDR(10, "Neg B", 0, -512, 0, 0, 0, 6), 0, -512.0},  // smallest B
		{fullSDR(11, "R exp", 1, 0, 7, 0, 0, 6), 1, 10000000.0}, // largest R exp
	}
	for _, tc := range cases {
		r, ok, err := DecodeSDR(tc.rec)
		if err != nil || !ok {
			t.Fatalf("%v %v", ok, err)
		}
		v, ok := r.Convert(tc.raw)
		if !ok || v != tc.want {
			t.Errorf("%s: Convert(%d) = %v, %v; want %v (M %d B %d Rexp %d Bexp %d)", r.Name, tc.raw, v, ok, tc.want, r.M, r.B, r.RExp, r.BExp)
		}
	}
	// Compact record: discrete, no conversion; event-only: not a sensor.
	compact := make([]byte, 32)
	compact[3], compact[7], compact[12], compact[13] = sdrCompactSensor, 6, 0x08, 0x6f
	compact[31] = 0xC0 | 4
	compact = append(compact, "PSU1"...)
	compact[4] = byte(len(compact) - 5)
	r, ok, err := DecodeSDR(compact)
	if err != nil || !ok || r.Name != "PSU1" || r.Threshold() {
		t.Errorf("compact: %+v %v %v", r, ok, err)
	}
	if _, ok := r.Convert(3); ok {
		t.Error("a compact record converted a reading")
	}
	if _, ok, err := DecodeSDR([]byte{1, 0, 0x51, 0x12, 0}); ok || err != nil {
		t.Errorf("MC locator: %v %v", ok, err)
	}
	if _, _, err := DecodeSDR([]byte{1, 0, 0x51}); !errors.Is(err, errSDR) {
		t.Errorf("short header: %v", err)
	}
	if _, _, err := DecodeSDR(fullSDR(1, "x", 1, 0, 0, 0, 0, 1)[:30]); !errors.Is(err, errSDR) {
		t.Errorf("truncated full record: %v", err)
	}
}

func FuzzDecodeFRU(f *testing.F) {
	img, _ := ipmisim.EncodeFRU(ipmisim.FRU{Manufacturer: "Acme", Product: "P", Serial: "S1", BoardSerial: "B"})
	f.Add(img)
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0xfe})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fru, err := DecodeFRU(b)
		if err != nil {
			return
		}
		for _, s := range []string{fru.Manufacturer, fru.Product, fru.Serial, fru.AssetTag, fru.BoardSerial, fru.ChassisSerial} {
			for _, r := range s {
				if r < 0x20 || r > 0x7e {
					t.Fatalf("non-printable %q in decoded field", s)
				}
			}
		}
		for _, v := range fru.Facts().Labels() {
			if len(v) > 63 {
				t.Fatalf("label value %q too long", v)
			}
		}
	})
}

func FuzzDecodeSDR(f *testing.F) {
	f.Add(fullSDR(1, "Inlet Temp", 1, 0, 0, 0, 0, 1), uint8(24))
	f.Add(fullSDR(2, "Fan", -50, 3, -2, 1, 2, 18), uint8(200))
	f.Add([]byte{1, 0, 0x51, 2, 0}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, raw uint8) {
		r, ok, err := DecodeSDR(b)
		if err != nil || !ok {
			return
		}
		if v, ok := r.Convert(raw); ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("Convert gave %v", v)
		}
		for _, c := range r.Name {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("non-printable name %q", r.Name)
			}
		}
	})
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"PowerEdge R640": "PowerEdge_R640", " SN-1 ": "SN-1", "--x--": "x", "": "",
		"a/b:c": "a_b_c", strings.Repeat("a", 70): strings.Repeat("a", 63), "(none)": "none",
	} {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	for code, want := range map[uint8]error{0xC1: ErrUnsupported, 0xCC: ErrUnsupported, 0xD5: ErrUnsupported,
		0xC0: ErrBusy, 0xD2: ErrBusy, 0xD4: ErrAuth} {
		e := &CompletionError{Command: "X", Code: code}
		if !errors.Is(e, want) {
			t.Errorf("0x%02X is not %v", code, want)
		}
		if !strings.Contains(e.Error(), "0x"+strings.ToUpper(hex2(code))) {
			t.Errorf("%q does not name the code", e)
		}
	}
	if errors.Is(&CompletionError{Code: 0xCB}, ErrUnsupported) || retryable(&CompletionError{Code: 0xC1}) {
		t.Error("wrong classification of 0xCB / 0xC1")
	}
	if !retryable(&CompletionError{Code: 0xC0}) || !retryable(&SessionError{Status: 0x01}) {
		t.Error("busy answers must be retried")
	}
	if !errors.Is(&SessionError{Status: 0x0D}, ErrAuth) || !errors.Is(&SessionError{Status: 0x01}, ErrBusy) {
		t.Error("session statuses")
	}
	if !suiteRejected(&SessionError{Status: 0x11}) || suiteRejected(&SessionError{Status: 0x0D}) {
		t.Error("suite rejection")
	}
}
