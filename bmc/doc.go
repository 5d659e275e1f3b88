// Package bmc drives servers' baseboard management controllers over IPMI
// 2.0 (RMCP+, "lanplus"): power status and control, the next boot device,
// and hardware inventory (device ID, FRU, SDR sensors).
//
// Sessions are authenticated and encrypted: cipher suites are tried in the
// configured order (default 17, then 3) and suite 0 is refused. Each BMC
// gets one session, reused between commands, a minimum interval between
// commands and a retry budget with backoff for timeouts and "insufficient
// resources" answers, because real BMCs hang or refuse service when
// hammered. Errors say whether the credentials were wrong (ErrAuth), the
// BMC is unreachable (ErrUnreachable), did not answer in time
// (ErrTimeout) or refused a command (ErrUnsupported, with the completion
// code in a *CompletionError).
//
// Pool runs an operation over many BMCs with a fleet-wide concurrency
// limit and returns a result per server. Passwords come from the
// inventory's secret references; they never appear in logs or errors.
package bmc
