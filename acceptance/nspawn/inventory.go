package nspawn

import (
	"fmt"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ParseInventory parses and validates a lab inventory after replacing each
// key of subst with its value (paths of keys and known_hosts that only
// exist at run time).
func ParseInventory(data []byte, subst map[string]string) (*inventory.Cluster, error) {
	s := string(data)
	for k, v := range subst {
		s = strings.ReplaceAll(s, k, v)
	}
	c, lines, err := inventory.Parse([]byte(s))
	if err != nil {
		return nil, err
	}
	if err := c.Validate(lines).Err(); err != nil {
		return nil, fmt.Errorf("lab inventory: %w", err)
	}
	return c, nil
}
