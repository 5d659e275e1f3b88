package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the inventory file: a 5,000-server inventory is about
// 2 MiB.
const MaxFileSize = 64 << 20

// Load reads, parses and defaults an inventory file. It does not validate:
// call Validate on the result.
func Load(path string) (*Cluster, *Lines, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading inventory %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("inventory %s is larger than %d MiB", path, MaxFileSize>>20)
	}
	c, lines, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	return c, lines, nil
}

// Parse decodes an inventory document, rejecting unknown fields, and applies
// the defaults. The returned Lines map field paths to line numbers for
// error messages.
func Parse(data []byte) (*Cluster, *Lines, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, cleanYAMLError(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, nil, errors.New("the document is empty: start with apiVersion: " + APIVersion)
	}
	var c Cluster
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, nil, cleanYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, nil, errors.New("the file holds more than one YAML document: keep one Cluster per file")
	}
	if c.APIVersion != APIVersion {
		return nil, nil, fmt.Errorf("apiVersion is %q: this tricenter reads %q", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		return nil, nil, fmt.Errorf("kind is %q: expected %q", c.Kind, Kind)
	}
	lines := &Lines{m: map[string]int{}}
	lines.index(root.Content[0], "")
	c.SetDefaults()
	return &c, lines, nil
}

// cleanYAMLError keeps yaml.v3's line numbers but drops Go type names.
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, rewriteTypeError(e))
		}
		return fmt.Errorf("invalid inventory:\n  %s", joinLines(msgs))
	}
	return fmt.Errorf("invalid YAML: %w", err)
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(x)
	}
	return b.String()
}

// Lines maps field paths ("spec.racks[3].servers[7].bmc.address") to the
// line they were read from.
type Lines struct{ m map[string]int }

// Line returns the line of path, or of its nearest ancestor that was
// present in the file; 0 when unknown.
func (l *Lines) Line(path string) int {
	if l == nil {
		return 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if n, ok := l.m[p]; ok {
			return n
		}
	}
	return 0
}

func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		switch p[i] {
		case '.':
			return p[:i]
		case '[':
			return p[:i]
		}
	}
	return ""
}

func (l *Lines) index(n *yaml.Node, path string) {
	if path != "" {
		l.m[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			l.m[p] = k.Line
			l.index(v, p)
			l.m[p] = k.Line
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			l.index(v, path+"["+strconv.Itoa(i)+"]")
		}
	}
}
