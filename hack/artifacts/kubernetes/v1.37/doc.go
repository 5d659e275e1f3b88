// Package kubernetes pins the Kubernetes v1.37 release `make artifacts`
// builds; hack/artifacts/build.sh builds k8s.io/kubernetes/cmd/... against
// this module's go.mod and go.sum into <binary>-<version> artifacts.
package kubernetes
