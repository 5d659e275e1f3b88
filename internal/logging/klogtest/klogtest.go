// Package klogtest holds what the tests of klog's routing share
// (internal/logging, the CLI's logger, the provider's tflog bridge): a
// record that client-go itself logs through klog. Only tests import it.
package klogtest

import (
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// ClientGoWarning is how the warning ClientGoWarns provokes starts; klog
// hands it to its logger at level Info.
const ClientGoWarning = "Neither --kubeconfig nor --master was specified"

// ClientGoWarns makes client-go log its own warning through klog: clientcmd
// asked for a configuration with neither a kubeconfig nor a master, outside
// a cluster (KUBERNETES_SERVICE_HOST is emptied for the test).
func ClientGoWarns(t testing.TB) {
	t.Helper()
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := clientcmd.BuildConfigFromFlags("", ""); err == nil {
		t.Fatal("clientcmd found a configuration: the warning path was not taken")
	}
}
