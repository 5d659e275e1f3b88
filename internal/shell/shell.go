// Package shell quotes words for a POSIX shell: the commands tricenter runs
// on hosts over SSH, the ones the lab runs locally, and the ones the CLI
// prints for an operator to paste.
package shell

import "strings"

// Quote quotes s as one word for a POSIX shell: unchanged when it holds
// only letters, digits and -_./:=@%+, (and is not empty), otherwise in
// single quotes, each ' written as '\”.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
