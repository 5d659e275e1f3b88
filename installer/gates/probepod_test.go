package gates

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The gates' probe pods meet Pod Security's "restricted" profile: they run
// in any namespace the cluster's default admits and warn nothing.
func TestProbePodIsRestricted(t *testing.T) {
	p := probePod("ns", "probe-server", "n1", []string{"serve"})
	if len(p.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(p.Spec.Containers))
	}
	sc := p.Spec.Containers[0].SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no security context")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want drop ALL and nothing added", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("runs as root: runAsNonRoot %v runAsUser %v", sc.RunAsNonRoot, sc.RunAsUser)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp %+v, want RuntimeDefault", sc.SeccompProfile)
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged")
	}
	if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
		t.Error("host namespaces")
	}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				t.Errorf("host port %d", port.HostPort)
			}
		}
	}
}
