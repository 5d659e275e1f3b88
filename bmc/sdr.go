package bmc

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/bougou/go-ipmi/pkg/client"
)

// SDR record types this package decodes.
const (
	sdrFullSensor    = 0x01
	sdrCompactSensor = 0x02
)

// errSDR is wrapped by every SDR decoding error.
var errSDR = errors.New("invalid SDR record")

// SensorRecord is what a full (type 1) or compact (type 2) sensor data
// record says about a sensor.
type SensorRecord struct {
	RecordID         uint16
	RecordType       uint8
	OwnerID          uint8
	OwnerLUN         uint8
	Number           uint8
	EntityID         uint8
	EntityInstance   uint8
	SensorType       uint8
	EventReadingType uint8
	Name             string
	// AnalogFormat: 0 unsigned, 1 one's complement, 2 two's complement,
	// 3 no analog reading.
	AnalogFormat  uint8
	Percentage    bool
	BaseUnit      uint8
	Linearization uint8
	// Reading conversion (full records): y = L((M*x + B*10^BExp) * 10^RExp).
	M, B       int
	BExp, RExp int
}

// Threshold reports whether the sensor has threshold-based (analog)
// readings.
func (r SensorRecord) Threshold() bool {
	return r.EventReadingType == 0x01 && r.RecordType == sdrFullSensor && r.AnalogFormat != 3
}

// DecodeSDR decodes one SDR record (header included). ok is false for
// record types that do not describe a readable sensor.
func DecodeSDR(b []byte) (rec SensorRecord, ok bool, err error) {
	if len(b) < 5 {
		return rec, false, fmt.Errorf("%w: %d bytes, shorter than the 5-byte header", errSDR, len(b))
	}
	rec.RecordID = uint16(b[0]) | uint16(b[1])<<8
	rec.RecordType = b[3]
	if n := int(b[4]); 5+n < len(b) {
		b = b[:5+n]
	}
	var idAt int
	switch rec.RecordType {
	case sdrFullSensor:
		idAt = 47
	case sdrCompactSensor:
		idAt = 31
	default:
		return rec, false, nil
	}
	if len(b) < idAt+1 {
		return rec, false, fmt.Errorf("%w: record %d of type %d has %d bytes, needs at least %d", errSDR, rec.RecordID, rec.RecordType, len(b), idAt+1)
	}
	rec.OwnerID, rec.OwnerLUN, rec.Number = b[5], b[6]&0x03, b[7]
	rec.EntityID, rec.EntityInstance = b[8], b[9]&0x7f
	rec.SensorType, rec.EventReadingType = b[12], b[13]
	rec.AnalogFormat = b[20] >> 6
	rec.Percentage = b[20]&0x01 != 0
	rec.BaseUnit = b[21]
	if rec.RecordType == sdrFullSensor {
		rec.Linearization = b[23] & 0x7f
		rec.M = signExtend(int(b[24])|int(b[25]>>6)<<8, 10)
		rec.B = signExtend(int(b[26])|int(b[27]>>6)<<8, 10)
		rec.RExp = signExtend(int(b[29]>>4), 4)
		rec.BExp = signExtend(int(b[29]&0x0f), 4)
	} else {
		rec.AnalogFormat = 3 // compact records carry no conversion factors
	}
	tl := b[idAt]
	n := int(tl & 0x1f)
	body := b[idAt+1:]
	typ := tl >> 6
	switch {
	case n <= len(body):
		rec.Name = decodeTypeLength(typ, body[:n])
	case typ == 2 && (n*6+7)/8 <= len(body):
		// OpenIPMI (and so ipmi_sim) counts 6-bit packed ID strings in
		// characters rather than bytes.
		rec.Name = cleanString(unpack6bit(body[:(n*6+7)/8])[:n])
	default:
		return rec, true, fmt.Errorf("%w: record %d: ID string of %d bytes is truncated to %d", errSDR, rec.RecordID, n, len(body))
	}
	return rec, true, nil
}

func signExtend(v, bits int) int {
	if v&(1<<(bits-1)) != 0 {
		return v - 1<<bits
	}
	return v
}

// Convert turns a raw reading byte into a value in the sensor's unit. ok
// is false when the record does not allow it (no analog reading,
// non-linear sensor, or a result that is not a finite number).
func (r SensorRecord) Convert(raw uint8) (v float64, ok bool) {
	if !r.Threshold() {
		return 0, false
	}
	var x float64
	switch r.AnalogFormat {
	case 0:
		x = float64(raw)
	case 1:
		if raw&0x80 != 0 {
			x = -float64(^raw & 0x7f)
		} else {
			x = float64(raw)
		}
	case 2:
		x = float64(int8(raw))
	}
	y := (float64(r.M)*x + float64(r.B)*math.Pow10(r.BExp)) * math.Pow10(r.RExp)
	switch r.Linearization {
	case 0:
	case 1:
		y = math.Log(y)
	case 2:
		y = math.Log10(y)
	case 3:
		y = math.Log2(y)
	case 4:
		y = math.Exp(y)
	case 5:
		y = math.Pow(10, y)
	case 6:
		y = math.Exp2(y)
	case 7:
		y = 1 / y
	case 8:
		y = y * y
	case 9:
		y = y * y * y
	case 10:
		y = math.Sqrt(y)
	case 11:
		y = math.Cbrt(y)
	default:
		return 0, false
	}
	if math.IsNaN(y) || math.IsInf(y, 0) {
		return 0, false
	}
	// Keep what the conversion factors can express: no float noise.
	if math.Abs(y) < 1e9 {
		y = math.Round(y*1e6) / 1e6
	}
	return y, true
}

// Sensor is one sensor with its current reading.
type Sensor struct {
	Number uint8  `json:"number"`
	Name   string `json:"name"`
	// Type is "temperature", "fan", "power-supply", "voltage", ... or
	// "type 0xNN".
	Type string `json:"type"`
	// Value and Unit are set for analog sensors with a valid reading.
	Value *float64 `json:"value,omitempty"`
	Unit  string   `json:"unit,omitempty"`
	// States lists the asserted states of discrete sensors.
	States []string `json:"states,omitempty"`
	// Status is "ok", "warning", "critical", "non-recoverable", "failed"
	// or "unavailable".
	Status string `json:"status"`
}

var sensorTypeNames = map[uint8]string{
	0x01: "temperature", 0x02: "voltage", 0x03: "current", 0x04: "fan",
	0x05: "physical-security", 0x07: "processor", 0x08: "power-supply", 0x09: "power-unit",
	0x0a: "cooling-device", 0x0c: "memory", 0x0d: "drive-slot", 0x23: "watchdog",
}

func sensorTypeName(t uint8) string {
	if n, ok := sensorTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type 0x%02x", t)
}

var unitNames = map[uint8]string{
	1: "degrees C", 2: "degrees F", 3: "degrees K", 4: "Volts", 5: "Amps", 6: "Watts",
	7: "Joules", 9: "VA", 17: "CFM", 18: "RPM", 19: "Hz", 22: "seconds",
}

func unitName(u uint8, pct bool) string {
	if pct {
		return "%"
	}
	if n, ok := unitNames[u]; ok {
		return n
	}
	return fmt.Sprintf("unit %d", u)
}

// powerSupplyStates are the sensor-specific offsets of sensor type 0x08.
var powerSupplyStates = []string{
	"presence detected", "failure detected", "predictive failure", "input lost",
	"input lost or out of range", "input out of range", "configuration error", "standby",
}

// Sensors reads the SDR repository and the current reading of every
// sensor the BMC owns.
func (c *Client) Sensors(ctx context.Context) ([]Sensor, error) {
	var out []Sensor
	err := c.do(ctx, "reading sensors", func(ctx context.Context, conn *client.Client) error {
		out = nil
		recs, err := readSDRs(ctx, conn)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.OwnerID != 0x20 || r.OwnerLUN != 0 {
				continue // satellite controllers need bridging; not read
			}
			s, err := readSensor(ctx, conn, r)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// maxSDRs bounds the walk of an SDR repository whose next-record chain
// loops.
const maxSDRs = 1024

func readSDRs(ctx context.Context, conn *client.Client) ([]SensorRecord, error) {
	var out []SensorRecord
	seen := map[uint16]bool{}
	for id := uint16(0); id != 0xffff; {
		if seen[id] || len(seen) >= maxSDRs {
			return out, fmt.Errorf("the SDR repository's record chain loops at record %d", id)
		}
		seen[id] = true
		res, err := conn.GetSDR(ctx, id)
		if err != nil {
			var ce *CompletionError
			if cerr := classify(fmt.Sprintf("Get SDR (record %d)", id), err); errors.As(cerr, &ce) && ce.Code == 0xCB && id == 0 {
				return nil, nil // empty repository
			} else {
				return nil, cerr
			}
		}
		rec, ok, err := DecodeSDR(res.RecordData)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rec)
		}
		id = res.NextRecordID
	}
	return out, nil
}

func readSensor(ctx context.Context, conn *client.Client, r SensorRecord) (Sensor, error) {
	s := Sensor{Number: r.Number, Name: r.Name, Type: sensorTypeName(r.SensorType), Status: "ok"}
	res, err := conn.GetSensorReading(ctx, r.Number)
	if err != nil {
		var ce *CompletionError
		if cerr := classify(fmt.Sprintf("Get Sensor Reading (sensor %d, %s)", r.Number, r.Name), err); errors.As(cerr, &ce) {
			s.Status = "unavailable"
			return s, nil
		} else {
			return s, cerr
		}
	}
	if res.ReadingUnavailable || res.SensorScanningDisabled {
		s.Status = "unavailable"
		return s, nil
	}
	if r.Threshold() {
		if v, ok := r.Convert(res.Reading); ok {
			s.Value, s.Unit = &v, unitName(r.BaseUnit, r.Percentage)
		}
		switch {
		case res.Above_UNR || res.Below_LNR:
			s.Status = "non-recoverable"
		case res.Above_UCR || res.Below_LCR:
			s.Status = "critical"
		case res.Above_UNC || res.Below_LNC:
			s.Status = "warning"
		}
		return s, nil
	}
	bits := res.OptionalData1
	for i := 0; i < 8; i++ {
		if bits&(1<<i) == 0 {
			continue
		}
		if r.SensorType == 0x08 && r.EventReadingType == 0x6f {
			s.States = append(s.States, powerSupplyStates[i])
			if i >= 1 && i <= 4 || i == 6 {
				s.Status = "failed"
			}
		} else {
			s.States = append(s.States, fmt.Sprintf("state %d", i))
		}
	}
	return s, nil
}
