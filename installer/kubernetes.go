package installer

import (
	"context"
	"fmt"
)

func (r *applyRun) kubernetes(_ context.Context, c Component) error {
	return fmt.Errorf("component %s is not available in this build", c)
}
