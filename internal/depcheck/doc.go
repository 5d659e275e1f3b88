// Package depcheck holds the test that keeps the product binaries free of
// the lab and the operator's binaries free of gobgp: `go list -deps` of the
// provider (the module root), cmd/tricenter, cmd/tricenter-bgp,
// cmd/tricenter-probe, cmd/tricenter-lb and cmd/tricenter-snapshot must not
// contain acceptance/..., internal/ipmisim or bgp/bgplab, and those of the
// provider, cmd/tricenter, cmd/tricenter-lb and cmd/tricenter-snapshot must
// not contain github.com/osrg/gobgp (only the node agent, cmd/tricenter-bgp, links it,
// through bgp/agent). Run it alone with `make deps-check`.
package depcheck
