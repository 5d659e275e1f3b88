#!/usr/bin/env bash
# Builds the pinned binaries the installer uploads, offline from the Go
# module proxy, into an artifact directory with a sha256 manifest
# (SHA256SUMS, sha256sum format). A component is rebuilt only when its build
# module (go.mod, go.sum, sources) changed since the last build.
#
#   hack/artifacts/build.sh [etcd] [kubernetes]     (default: both)
#   ARTIFACTS_DIR=/path hack/artifacts/build.sh etcd
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${ARTIFACTS_DIR:-$root/.cache/artifacts}
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(etcd kubernetes)

# stamp DIR: a hash of the build module's inputs.
stamp() { (cd "$1" && cat go.mod go.sum ./*.go 2>/dev/null | sha256sum | cut -d' ' -f1); }

# fresh NAME DIR BIN...: true when every BIN exists and the stamp matches.
fresh() {
  local name=$1 dir=$2; shift 2
  [[ -f "$out/.$name.stamp" && "$(cat "$out/.$name.stamp")" == "$(stamp "$dir")" ]] || return 1
  for b in "$@"; do [[ -x "$out/$b" ]] || return 1; done
}

# install_bin TMP NAME: move a built binary into place atomically.
install_bin() { chmod 0755 "$1" && mv -f "$1" "$out/$2"; }

manifest() {
  (cd "$out" && find . -maxdepth 1 -type f ! -name 'SHA256SUMS*' ! -name '.*' -printf '%f\n' | sort |
    xargs -r sha256sum > .SHA256SUMS.tmp && mv -f .SHA256SUMS.tmp SHA256SUMS)
}

build_etcd() {
  local dir=$root/hack/artifacts/etcd
  if fresh etcd "$dir" etcd etcdctl; then echo "etcd: up to date in $out"; return; fi
  local v; v=$(cd "$dir" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  echo "==> building etcd $v and etcdctl"
  (cd "$dir" && go build -trimpath -ldflags='-s -w' -o "$out/.etcd.tmp" . &&
    go build -trimpath -ldflags='-s -w' -o "$out/.etcdctl.tmp" go.etcd.io/etcd/etcdctl/v3)
  install_bin "$out/.etcd.tmp" etcd
  install_bin "$out/.etcdctl.tmp" etcdctl
  stamp "$dir" > "$out/.etcd.stamp"
}

build_kubernetes() {
  local dir=$root/hack/artifacts/kubernetes
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  if fresh kubernetes "$dir" "${bins[@]}"; then echo "kubernetes: up to date in $out"; return; fi
  local v; v=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  local minor=${v#v1.}; minor=${minor%%.*}
  local pkg=k8s.io/component-base/version cg=k8s.io/client-go/pkg/version
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in $pkg $cg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitCommit=tricenter-$v"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  for b in "${bins[@]}"; do
    echo "==> building $b $v"
    (cd "$dir" && go build -tags selinux,notest -trimpath -ldflags "$ld" -o "$out/.$b.tmp" "k8s.io/kubernetes/cmd/$b")
    install_bin "$out/.$b.tmp" "$b"
  done
  stamp "$dir" > "$out/.kubernetes.stamp"
}

for p in "${parts[@]}"; do
  case "$p" in
    etcd) build_etcd ;;
    kubernetes) build_kubernetes ;;
    *) echo "unknown artifact $p: use etcd or kubernetes" >&2; exit 2 ;;
  esac
done
manifest
echo "artifacts in $out:"; cat "$out/SHA256SUMS"
