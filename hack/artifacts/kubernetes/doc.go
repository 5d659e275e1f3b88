// Package kubernetes pins the Kubernetes release `make artifacts` builds;
// hack/artifacts/build.sh builds k8s.io/kubernetes/cmd/... against this
// module's go.mod and go.sum.
package kubernetes
