package inventory

// Validate checks the whole inventory and reports every problem at once.
// Call it after SetDefaults (Load and Parse do that).
func (c *Cluster) Validate(lines *Lines) *Result {
	r := &Result{lines: lines, Errors: []Problem{}, Warnings: []Problem{}}
	if c.Metadata.Name == "" {
		r.errorf("metadata.name", "is empty: name the cluster")
	}
	r.sort()
	return r
}
