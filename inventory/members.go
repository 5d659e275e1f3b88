package inventory

import (
	"encoding/json"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// EtcdMembers is the etcd member count; zero means "auto".
type EtcdMembers int

// MembersAuto lets placement choose 5 members when the centers can hold
// 2/2/1, otherwise 3.
const MembersAuto EtcdMembers = 0

// UnmarshalYAML accepts "auto" or an integer.
func (m *EtcdMembers) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: etcd.members must be \"auto\" or a number such as 3, 5 or 7", n.Line)
	}
	return m.parse(n.Value, n.Line)
}

func (m *EtcdMembers) parse(v string, line int) error {
	if v == "auto" || v == "" {
		*m = MembersAuto
		return nil
	}
	i, err := strconv.Atoi(v)
	if err != nil || i <= 0 {
		if line > 0 {
			return fmt.Errorf("line %d: etcd.members is %q: use \"auto\" or a positive odd number such as 3, 5 or 7", line, v)
		}
		return fmt.Errorf("etcd.members is %q: use \"auto\" or a positive odd number such as 3, 5 or 7", v)
	}
	*m = EtcdMembers(i)
	return nil
}

// MarshalYAML writes "auto" for zero.
func (m EtcdMembers) MarshalYAML() (any, error) {
	if m == MembersAuto {
		return "auto", nil
	}
	return int(m), nil
}

// MarshalJSON writes "auto" for zero.
func (m EtcdMembers) MarshalJSON() ([]byte, error) {
	if m == MembersAuto {
		return []byte(`"auto"`), nil
	}
	return []byte(strconv.Itoa(int(m))), nil
}

// UnmarshalJSON accepts "auto" or a number.
func (m *EtcdMembers) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return m.parse(s, 0)
	}
	return m.parse(string(b), 0)
}

// String renders the count.
func (m EtcdMembers) String() string {
	if m == MembersAuto {
		return "auto"
	}
	return strconv.Itoa(int(m))
}
