package phase

// RelayToken is r's token, for the tests that look for it where it must
// never be (command lines, logs, errors, file names).
func RelayToken(r *Relay) string { return r.token }
