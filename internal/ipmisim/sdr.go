package ipmisim

import (
	"fmt"
	"strings"
)

// SensorKind is the kind of a simulated sensor.
type SensorKind int

// Sensor kinds. Temperature, Fan and Voltage are analog threshold sensors
// (full SDRs); PowerSupply is a discrete sensor-specific sensor (compact
// SDR) whose state bits are 0 presence detected, 1 failure detected,
// 2 predictive failure, 3 input lost.
const (
	Temperature SensorKind = iota + 1
	Fan
	Voltage
	PowerSupply
)

// Sensor is one simulated sensor with its SDR.
type Sensor struct {
	Number uint8
	// Name is the SDR ID string: printable ASCII, at most 16 bytes.
	// sdrcomp packs upper-case-only names as 6-bit ASCII.
	Name string
	Kind SensorKind
	// Raw is the reading byte of an analog sensor; the value shown is
	// (M*Raw + B*10^BExp) * 10^RExp.
	Raw  uint8
	M    int // default 1
	B    int
	BExp int
	RExp int
	// States are the asserted state bits of a discrete sensor.
	States []uint8
}

func (s Sensor) analog() bool { return s.Kind != PowerSupply }

func (s Sensor) validate() error {
	if s.Name == "" || len(s.Name) > 16 {
		return fmt.Errorf("sensor %d: name %q must be 1 to 16 bytes", s.Number, s.Name)
	}
	for i := 0; i < len(s.Name); i++ {
		if c := s.Name[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("sensor %d: name %q must be printable ASCII without quotes or backslashes", s.Number, s.Name)
		}
	}
	if s.Number == 0 {
		return fmt.Errorf("sensor %q: number 0 is the BMC's watchdog sensor: use 1 to 255", s.Name)
	}
	switch s.Kind {
	case Temperature, Fan, Voltage, PowerSupply:
	default:
		return fmt.Errorf("sensor %q: unknown kind %d", s.Name, s.Kind)
	}
	if s.M < -512 || s.M > 511 || s.B < -512 || s.B > 511 {
		return fmt.Errorf("sensor %q: M and B must fit in 10 bits", s.Name)
	}
	if s.RExp < -8 || s.RExp > 7 || s.BExp < -8 || s.BExp > 7 {
		return fmt.Errorf("sensor %q: exponents must be -8 to 7", s.Name)
	}
	for _, b := range s.States {
		if b > 14 {
			return fmt.Errorf("sensor %q: state bit %d is out of range 0-14", s.Name, b)
		}
	}
	return nil
}

// DefaultSensors is a typical small server: two temperatures, two fans, a
// voltage and two power supplies (the second one reporting a failure).
func DefaultSensors() []Sensor {
	return []Sensor{
		{Number: 1, Name: "Inlet Temp", Kind: Temperature, Raw: 24},
		{Number: 2, Name: "CPU1 Temp", Kind: Temperature, Raw: 51},
		{Number: 3, Name: "FAN1", Kind: Fan, Raw: 96, M: 50},
		{Number: 4, Name: "Fan2", Kind: Fan, Raw: 100, M: 50},
		{Number: 5, Name: "12V Rail", Kind: Voltage, Raw: 200, M: 6, RExp: -2},
		{Number: 6, Name: "PSU1 Status", Kind: PowerSupply, States: []uint8{0}},
		{Number: 7, Name: "PSU2 Status", Kind: PowerSupply, States: []uint8{0, 1}},
	}
}

var kindSDR = map[SensorKind]struct{ sensorType, unit, entity string }{
	Temperature: {"Temperature", "degrees_C", "system_board"},
	Fan:         {"Fan", "RPM", "fan_cooling_device"},
	Voltage:     {"Voltage", "Volts", "system_board"},
	PowerSupply: {"Power_Supply", "", "power_supply"},
}

var kindCode = map[SensorKind]uint8{Temperature: 0x01, Fan: 0x04, Voltage: 0x02, PowerSupply: 0x08}

// sdrSource renders the sensors (and the BMC's management controller
// locator) in sdrcomp's input language.
func sdrSource(name string, sensors []Sensor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sdr type 18\n\tdevice_slave_address\t0x20\n\tdevice_channel_number\t0\n"+
		"\tchassis\ttrue\n\tipmb_event_gen\tfalse\n\tipmb_event_recv\tfalse\n\tfru_inventory\ttrue\n"+
		"\tsel\ttrue\n\tsdr\ttrue\n\tsensor\ttrue\n\tentity_id\tsystem_board\n\tentity_instance\t1\n"+
		"\tid_string\t%q\nendsdr\n\n", name)
	for _, s := range sensors {
		k := kindSDR[s.Kind]
		if s.analog() {
			m := s.M
			if m == 0 {
				m = 1
			}
			fmt.Fprintf(&b, "sdr type 1\n\tsensor_owner_id\t0x20\n\tsensor_owner_lun\t0\n\tchannel_number\t0\n"+
				"\tsensor_number\t%d\n\tentity_id\t%s\n\tentity_instance\t1\n\tsensor_type\t%s\n"+
				"\tinit_scanning\ttrue\n\tinit_sensor_type\ttrue\n\tdefault_sensor_scan_on\ttrue\n"+
				"\tevent_reading_type_code\t1\n\tanalog_data_format\tunsigned\n\trate_unit\tnone\n"+
				"\tmodifier_unit\tnone\n\tpercentage\tfalse\n\tbase_unit\t%s\n\tmodifier_unit_code\tunspecified\n"+
				"\tlinearization\tlinear\n\tm\t%d\n\ttolerance\t0\n\tb\t%d\n\taccuracy\t1\n\taccuracy_exp\t0\n"+
				"\tsensor_direction\tinput\n\tr_exp\t%d\n\tb_exp\t%d\n\tsensor_maximum\t255\n\tsensor_minimum\t0\n"+
				"\tid_string\t%q\nendsdr\n\n",
				s.Number, k.entity, k.sensorType, k.unit, m, s.B, s.RExp, s.BExp, s.Name)
			continue
		}
		fmt.Fprintf(&b, "sdr type 2\n\tsensor_owner_id\t0x20\n\tsensor_owner_lun\t0\n\tchannel_number\t0\n"+
			"\tsensor_number\t%d\n\tentity_id\t%s\n\tentity_instance\t1\n\tsensor_type\t%s\n"+
			"\tinit_scanning\ttrue\n\tinit_sensor_type\ttrue\n\tdefault_sensor_scan_on\ttrue\n"+
			"\tevent_reading_type_code\t0x6f\n\tid_string\t%q\nendsdr\n\n",
			s.Number, k.entity, k.sensorType, s.Name)
	}
	return b.String()
}

// sensorCommands are the ipmi_sim commands that create the sensors and set
// their readings.
func sensorCommands(sensors []Sensor) string {
	var b strings.Builder
	for _, s := range sensors {
		ert := 0x01
		if !s.analog() {
			ert = 0x6f
		}
		fmt.Fprintf(&b, "sensor_add 0x20 0 %d 0x%02x 0x%02x\n", s.Number, kindCode[s.Kind], ert)
		if s.analog() {
			fmt.Fprintf(&b, "sensor_set_value 0x20 0 %d %d 0\n", s.Number, s.Raw)
			continue
		}
		for i, bit := range s.States {
			cmd := "sensor_set_bit"
			if i == 0 {
				cmd = "sensor_set_bit_clr_rest"
			}
			fmt.Fprintf(&b, "%s 0x20 0 %d %d 1 0\n", cmd, s.Number, bit)
		}
	}
	return b.String()
}
