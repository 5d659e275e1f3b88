// Command coredns is CoreDNS built from github.com/coredns/coredns at the
// version pinned in this module's go.mod, with CoreDNS's own plugin list.
// `make artifacts` builds it and packs it as an OCI image tarball
// (registry.k8s.io/coredns/coredns) that nodes import with ctr.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // CoreDNS's standard plugins.
	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
