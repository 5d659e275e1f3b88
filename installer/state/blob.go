package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Formats of the engine state blob, the string the Terraform provider
// keeps in a resource's state attribute.
const (
	// BlobFormatBare is the first format: a bare JSON object of files
	// (path → content), as providers before the format field wrote it.
	BlobFormatBare = 1
	// BlobFormat is the format EncodeBlob writes:
	// {"format":2,"files":{path: content, ...}}.
	BlobFormat = 2
)

// ErrNewerBlob is wrapped when a blob's format is newer than this
// program reads.
var ErrNewerBlob = errors.New("written by a newer provider")

type blob struct {
	Format int               `json:"format"`
	Files  map[string]string `json:"files"`
}

// EncodeBlob is files (as Snapshot returns them) in the current format.
// Map keys are sorted, so the same files always give the same string.
func EncodeBlob(files map[string]string) (string, error) {
	if files == nil {
		files = map[string]string{}
	}
	b, err := json.Marshal(blob{Format: BlobFormat, Files: files})
	if err != nil {
		return "", fmt.Errorf("encoding the engine state: %w", err)
	}
	return string(b), nil
}

// DecodeBlob reads a blob of any format this program knows, returning its
// files and its format (0 for an empty string, which holds no file). A
// format newer than BlobFormat is an error wrapping ErrNewerBlob.
func DecodeBlob(s string) (files map[string]string, format int, err error) {
	if len(bytes.TrimSpace([]byte(s))) == 0 {
		return map[string]string{}, 0, nil
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &probe); err != nil {
		return nil, 0, fmt.Errorf("the engine state is not a JSON object (%w): restore the state from a backup", err)
	}
	raw, versioned := probe["format"]
	if versioned && len(raw) > 0 && raw[0] == '"' {
		// A bare object of files with one called "format".
		versioned = false
	}
	if !versioned {
		files = map[string]string{}
		if err := json.Unmarshal([]byte(s), &files); err != nil {
			return nil, 0, fmt.Errorf("the engine state is neither a JSON object of files nor a versioned state (%w): restore the state from a backup", err)
		}
		return files, BlobFormatBare, nil
	}
	var v blob
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, 0, fmt.Errorf("the engine state's format or files cannot be read (%w): restore the state from a backup", err)
	}
	switch {
	case v.Format > BlobFormat:
		return nil, v.Format, fmt.Errorf("the engine state has format %d, %w: upgrade the provider (this one reads formats %d to %d)",
			v.Format, ErrNewerBlob, BlobFormatBare, BlobFormat)
	case v.Format < BlobFormat:
		return nil, v.Format, fmt.Errorf("the engine state has format %d, which no provider writes: restore the state from a backup", v.Format)
	}
	if v.Files == nil {
		v.Files = map[string]string{}
	}
	return v.Files, v.Format, nil
}
