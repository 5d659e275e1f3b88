#!/usr/bin/env bash
# Builds the pinned binaries and images the installer uploads, offline from
# the Go module proxy, into an artifact directory with a sha256 manifest
# (SHA256SUMS, sha256sum format, replaced atomically). A component is rebuilt
# only when its build module (go.mod, go.sum, sources) or its recipe here
# changed since the last build.
#
# kubernetes and etcd hold every supported release side by side: each
# version directory under hack/artifacts/kubernetes (v1.36, v1.37, ...) and
# hack/artifacts/etcd (v3.5, v3.6, ...) is a build module pinning one
# release, and its binaries are named <binary>-<version> (kubelet-v1.37.2,
# kube-apiserver-v1.36.3, etcd-v3.6.16, etcdctl-v3.5.35), as the installer
# asks for them (installer/artifacts.Versioned). Unversioned binaries of an
# older layout (kubelet, etcd, ...) are removed from the directory. The same
# build module and Go give the same bytes (-trimpath; Kubernetes' build date
# is its release's).
#
# runtime is containerd 2 (containerd, containerd-shim-runc-v2, ctr), runc
# (static, cgo) and the CNI plugins the node agents use (bridge, host-local,
# portmap, loopback), each from its pinned module (hack/artifacts/containerd,
# runc, cni), under their plain names.
#
# pause and coredns are container images for nodes without a registry: OCI
# image layout tarballs (pause.oci.tar, coredns.oci.tar) that
# `ctr -n k8s.io images import` takes, byte-for-byte reproducible. pause is
# built from the newest Kubernetes release's build/pause sources.
#
# agent is the node BGP agent and the etcd snapshot job, probe the gates' workload image and lb the
# load-balancer controller's image, all built from this checkout.
#
#   hack/artifacts/build.sh [etcd] [kubernetes] [runtime] [pause] [coredns] [agent] [probe] [lb] [kubeadm]
#   (default: all of them but kubeadm, bench/kubeadm.sh's)
#   ARTIFACTS_DIR=/path hack/artifacts/build.sh etcd
set -eEuo pipefail
shopt -s inherit_errexit
trap 'echo "hack/artifacts/build.sh: line $LINENO: $BASH_COMMAND failed" >&2' ERR
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${ARTIFACTS_DIR:-$root/.cache/artifacts}
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(etcd kubernetes runtime pause coredns agent probe lb)

# const NAME: the value of the string constant NAME in installer/node, so
# that the images are named as the node phases refer to them.
const() {
  local v; v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*= \"\(.*\)\"\$/\1/p" "$root"/installer/node/*.go | head -n1)
  [[ -n $v ]] || { echo "no string constant $1 in installer/node: set it in hack/artifacts/build.sh" >&2; exit 1; }
  echo "$v"
}
# Image names, as containerd's sandbox_image and the CoreDNS Deployment use
# them (installer/node DefaultPause, DefaultCoreDNS).
PAUSE_IMAGE=${PAUSE_IMAGE:-$(const DefaultPause)}
COREDNS_IMAGE=${COREDNS_IMAGE:-$(const DefaultCoreDNS)}
# The gates' workload (installer.ProbeImage).
PROBE_IMAGE=${PROBE_IMAGE:-tricenter.io/tricenter-probe:v1}
# The load-balancer controller (installer/addons LBImage).
LB_IMAGE=${LB_IMAGE:-tricenter.io/tricenter-lb:v1}

# The Kubernetes and etcd binaries, each built per release as NAME-VERSION.
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
ETCD_BINS=(etcd etcdctl etcdutl)

# stamp DIR: a hash of the build module's inputs.
stamp() { (cd "$1" && shopt -s nullglob && cat go.mod go.sum ./*.go | sha256sum | cut -d' ' -f1); }

# fresh NAME STAMP BIN...: true when every BIN exists and the stamp of NAME
# is STAMP.
fresh() {
  local name=$1 want=$2; shift 2
  [[ -f "$out/.$name.stamp" && "$(cat "$out/.$name.stamp")" == "$want" ]] || return 1
  local b
  for b in "$@"; do [[ -x "$out/$b" ]] || return 1; done
}

# install_bin TMP NAME: move a built binary into place atomically.
install_bin() { chmod 0755 "$1" && mv -f "$1" "$out/$2"; }

# releases COMPONENT: the version directories of hack/artifacts/COMPONENT,
# oldest first.
releases() {
  local d found=0
  while read -r d; do [[ -f $d/go.mod ]] && { echo "$d"; found=1; }; done < <(
    find "$root/hack/artifacts/$1" -mindepth 1 -maxdepth 1 -type d -name 'v*' | sort -V)
  [[ $found == 1 ]] || { echo "no release of $1: add a build module as hack/artifacts/$1/vMAJOR.MINOR" >&2; exit 1; }
}

# modversion DIR MODULE: the version of MODULE the build module in DIR pins,
# checked against the directory's name (v1.37 holds a v1.37.x).
modversion() {
  local v; v=$(cd "$1" && go list -m -f '{{.Version}}' "$2")
  [[ $v == "${1##*/}".* ]] || { echo "${1#"$root"/} pins $2 $v: a version directory holds its own minor (${1##*/}.x)" >&2; exit 1; }
  echo "$v"
}

# prune: remove the unversioned Kubernetes and etcd binaries (and their
# stamps) of the layout before releases sat side by side, so that the
# manifest lists only what the installer asks for.
prune() {
  local b
  for b in "${KUBE_BINS[@]}" "${ETCD_BINS[@]}"; do
    [[ -e $out/$b ]] && { echo "removing $b (unversioned, from an older layout)"; rm -f "${out:?}/$b"; }
  done
  rm -f "$out/.kubernetes.stamp" "$out/.etcd.stamp"
}

manifest() {
  (cd "$out" && find . -maxdepth 1 -type f ! -name 'SHA256SUMS*' ! -name '.*' -printf '%f\n' | sort |
    xargs -r sha256sum > .SHA256SUMS.tmp && mv -f .SHA256SUMS.tmp SHA256SUMS)
}

# took START WHAT: print how long WHAT took since START ($SECONDS).
took() { echo "$2: built in $((SECONDS - $1))s"; }

build_etcd() {
  local dirs dir; dirs=$(releases etcd)
  while IFS= read -r -u 3 dir; do build_etcd_release "$dir"; done 3<<< "$dirs"
}

# build_etcd_release DIR: etcd-VERSION, etcdctl-VERSION and etcdutl-VERSION
# from the build module in DIR (etcd through etcdmain, etcdctl and etcdutl,
# which restores snapshots, as its tools).
build_etcd_release() {
  local dir=$1 rel=${1##*/} t0=$SECONDS
  local v; v=$(modversion "$dir" go.etcd.io/etcd/server/v3)
  local st; st=$( (stamp "$dir"; declare -f build_etcd_release) | sha256sum | cut -d' ' -f1)
  if fresh "etcd-$rel" "$st" "${ETCD_BINS[@]/%/-$v}"; then echo "etcd $v: up to date in $out"; return; fi
  echo "==> building etcd $v, etcdctl $v and etcdutl $v"
  local ld="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=tricenter-$v"
  (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$out/.etcd-$v.tmp" . &&
    go build -trimpath -ldflags "$ld" -o "$out/.etcdctl-$v.tmp" go.etcd.io/etcd/etcdctl/v3 &&
    go build -trimpath -ldflags "$ld" -o "$out/.etcdutl-$v.tmp" go.etcd.io/etcd/etcdutl/v3)
  install_bin "$out/.etcd-$v.tmp" "etcd-$v"
  install_bin "$out/.etcdctl-$v.tmp" "etcdctl-$v"
  install_bin "$out/.etcdutl-$v.tmp" "etcdutl-$v"
  echo "$st" > "$out/.etcd-$rel.stamp"
  took "$t0" "etcd $v"
}

build_kubernetes() {
  local dirs dir; dirs=$(releases kubernetes)
  while IFS= read -r -u 3 dir; do build_kubernetes_release "$dir"; done 3<<< "$dirs"
}

# build_kubernetes_release DIR: the Kubernetes binaries of the release the
# build module in DIR pins, as NAME-VERSION, stamped with their version as
# the upstream build does (hack/lib/version.sh). The build date is the
# release's (its module version's time), so the same module gives the same
# bytes.
build_kubernetes_release() {
  local dir=$1 rel=${1##*/} t0=$SECONDS bins=("${@:2}")
  [[ ${#bins[@]} -gt 0 ]] || bins=("${KUBE_BINS[@]}")
  local v; v=$(modversion "$dir" k8s.io/kubernetes)
  local name=kubernetes-$rel
  [[ ${bins[*]} == "${KUBE_BINS[*]}" ]] || name=kubernetes-$rel-$(echo "${bins[*]}" | sha256sum | cut -c1-12)
  local st; st=$( (stamp "$dir"; declare -f build_kubernetes_release) | sha256sum | cut -d' ' -f1)
  if fresh "$name" "$st" "${bins[@]/%/-$v}"; then echo "kubernetes $v (${bins[*]}): up to date in $out"; return; fi
  local minor=${v#v1.}; minor=${minor%%.*}
  local pkg=k8s.io/component-base/version cg=k8s.io/client-go/pkg/version
  local date; date=$(cd "$dir" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
  [[ -n $date ]] || { echo "kubernetes $v: the module proxy gives no time for k8s.io/kubernetes $v" >&2; exit 1; }
  local ld="-s -w" p b
  for p in $pkg $cg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitCommit=tricenter-$v"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  for b in "${bins[@]}"; do
    echo "==> building $b $v"
    (cd "$dir" && go build -tags selinux,notest -trimpath -ldflags "$ld" -o "$out/.$b-$v.tmp" "k8s.io/kubernetes/cmd/$b")
    install_bin "$out/.$b-$v.tmp" "$b-$v"
  done
  echo "$st" > "$out/.$name.stamp"
  took "$t0" "kubernetes $v (${bins[*]})"
}

# blob DIR FILE: move FILE into the layout's blobs as its digest; print
# "sha256:HEX SIZE".
blob() {
  local sum size
  sum=$(sha256sum "$2" | cut -d' ' -f1); size=$(stat -c %s "$2")
  mkdir -p "$1/blobs/sha256" && mv -f "$2" "$1/blobs/sha256/$sum"
  echo "sha256:$sum $size"
}

# oci_image ROOTFS NAME ENTRYPOINT USER PORTS OUT: pack the directory ROOTFS
# as a one-layer OCI image layout tarball OUT holding image NAME. Every
# timestamp is the epoch and every owner root, so the same inputs give the
# same bytes (and digests).
oci_image() {
  local rootfs=$1 name=$2 entry=$3 user=$4 ports=$5 dest=$6
  local lay; lay=$(mktemp -d "$out/.oci.XXXXXX")
  # shellcheck disable=SC2054 # the commas are tar's
  local tarflags=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
  tar -C "$rootfs" "${tarflags[@]}" -cf "$lay/layer" .
  local layer; layer=$(blob "$lay" "$lay/layer")
  local exposed=""
  if [[ -n $ports ]]; then
    local p sep=""
    for p in $ports; do exposed+="$sep\"$p\":{}"; sep=,; done
    exposed=",\"ExposedPorts\":{$exposed}"
  fi
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"User":"%s","Entrypoint":["%s"],"WorkingDir":"/"%s},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$user" "$entry" "$exposed" "${layer% *}" > "$lay/config"
  local config; config=$(blob "$lay" "$lay/config")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "${config% *}" "${config#* }" "${layer% *}" "${layer#* }" > "$lay/manifest"
  local manifest; manifest=$(blob "$lay" "$lay/manifest")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "${manifest% *}" "${manifest#* }" "$name" "$name" > "$lay/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$lay/oci-layout"
  tar -C "$lay" "${tarflags[@]}" -cf "$out/.$dest.tmp" oci-layout index.json blobs
  rm -rf "$lay"
  chmod 0644 "$out/.$dest.tmp" && mv -f "$out/.$dest.tmp" "$out/$dest"
  echo "$dest: $name, manifest ${manifest% *}"
}

# build_pause: the pause image from the newest Kubernetes release's
# build/pause/linux/pause.c.
build_pause() {
  local dirs dir; dirs=$(releases kubernetes); dir=${dirs##*$'\n'}
  local stampval; stampval=$( (stamp "$dir"; echo "$PAUSE_IMAGE"; declare -f oci_image build_pause) | sha256sum | cut -d' ' -f1)
  if [[ -f "$out/.pause.stamp" && "$(cat "$out/.pause.stamp")" == "$stampval" && -f "$out/pause.oci.tar" ]]; then
    echo "pause: up to date in $out"; return
  fi
  local src; src=$(cd "$dir" && go mod download -json k8s.io/kubernetes | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -f "$src/build/pause/linux/pause.c" ]] || { echo "pause: no build/pause/linux/pause.c in the k8s.io/kubernetes module ($src)" >&2; exit 1; }
  command -v gcc >/dev/null || { echo "pause: gcc is missing: run make deps (hack/packages.txt)" >&2; exit 1; }
  local tag; tag=$(sed -n 's/^TAG ?= *//p' "$src/build/pause/Makefile")
  echo "==> building pause $tag (from $src) as $PAUSE_IMAGE"
  [[ ${PAUSE_IMAGE##*:} == "$tag" ]] ||
    echo "pause: the image is named $PAUSE_IMAGE (installer/node DefaultPause) but the sources are pause $tag" >&2
  local rootfs; rootfs=$(mktemp -d "$out/.pause-root.XXXXXX"); chmod 0755 "$rootfs"
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-tricenter" -o "$rootfs/pause" "$src/build/pause/linux/pause.c"
  strip "$rootfs/pause"
  chmod 0755 "$rootfs/pause"
  oci_image "$rootfs" "$PAUSE_IMAGE" /pause 65535:65535 "" pause.oci.tar
  rm -rf "$rootfs"
  echo "$stampval" > "$out/.pause.stamp"
}

build_coredns() {
  local dir=$root/hack/artifacts/coredns
  local stampval; stampval=$( (stamp "$dir"; echo "$COREDNS_IMAGE"; declare -f oci_image build_coredns) | sha256sum | cut -d' ' -f1)
  if [[ -f "$out/.coredns.stamp" && "$(cat "$out/.coredns.stamp")" == "$stampval" && -f "$out/coredns.oci.tar" ]]; then
    echo "coredns: up to date in $out"; return
  fi
  local v; v=$(cd "$dir" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
  echo "==> building coredns $v as $COREDNS_IMAGE"
  local rootfs; rootfs=$(mktemp -d "$out/.coredns-root.XXXXXX"); chmod 0755 "$rootfs"
  (cd "$dir" && go build -trimpath -ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" -o "$rootfs/coredns" .)
  chmod 0755 "$rootfs/coredns"
  oci_image "$rootfs" "$COREDNS_IMAGE" /coredns 0:0 "53/tcp 53/udp 9153/tcp" coredns.oci.tar
  rm -rf "$rootfs"
  echo "$stampval" > "$out/.coredns.stamp"
}

# build_kubeadm: what bench/kubeadm.sh needs to run kubeadm on the lab,
# never uploaded by the installer, so not part of the default set (build it
# into a directory of its own: ARTIFACTS_DIR=.cache/bench/kubeadm). The
# newest release's kubeadm, and the images kubeadm runs, named as it pulls
# them (registry.k8s.io/NAME:VERSION): kube-apiserver,
# kube-controller-manager and kube-scheduler as static pods, kube-proxy as
# its DaemonSet. Their binaries are the build module's, built as above
# (the same bytes as the installer's); kube-proxy's image carries this
# machine's iptables (nft backend, its libraries and extensions), as the
# nodes' Debian has it.
build_kubeadm() {
  local dirs dir; dirs=$(releases kubernetes); dir=${dirs##*$'\n'}
  local v; v=$(modversion "$dir" k8s.io/kubernetes)
  local imgs=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
  build_kubernetes_release "$dir" kubeadm "${imgs[@]}"
  local b rootfs stampval
  stampval=$( (for b in "${imgs[@]}"; do sha256sum < "$out/$b-$v"; done; declare -f oci_image build_kubeadm iptables_root) | sha256sum | cut -d' ' -f1)
  local missing=0
  for b in "${imgs[@]}"; do [[ -f "$out/$b.oci.tar" ]] || missing=1; done
  if [[ $missing == 0 && -f "$out/.kube-images.stamp" && "$(cat "$out/.kube-images.stamp")" == "$stampval" ]]; then
    echo "kubeadm images $v: up to date in $out"; return
  fi
  for b in "${imgs[@]}"; do
    rootfs=$(mktemp -d "$out/.$b-root.XXXXXX"); chmod 0755 "$rootfs"
    mkdir -p "$rootfs/usr/local/bin"
    cp "$out/$b-$v" "$rootfs/usr/local/bin/$b"
    [[ $b == kube-proxy ]] && iptables_root "$rootfs"
    oci_image "$rootfs" "registry.k8s.io/$b:$v" "/usr/local/bin/$b" 0:0 "" "$b.oci.tar"
    rm -rf "$rootfs"
  done
  echo "$stampval" > "$out/.kube-images.stamp"
}

# iptables_root ROOTFS: this machine's iptables (the nft backend
# xtables-nft-multi under every name kube-proxy calls), the libraries it
# loads and its extensions, laid out as Debian's merged /usr.
iptables_root() {
  local r=$1 multi=/usr/sbin/xtables-nft-multi lib=/usr/lib/x86_64-linux-gnu n f
  [[ -x $multi ]] || { echo "kubeadm: $multi is missing (iptables): run make deps (hack/packages.txt)" >&2; exit 1; }
  mkdir -p "$r/usr/sbin" "$r$lib" "$r/usr/lib64" "$r/etc"
  ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"; ln -s usr/sbin "$r/sbin"
  cp "$multi" "$r/usr/sbin/"
  for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$r/usr/sbin/$n"
  done
  cp -a "$lib/xtables" "$r$lib/"
  # The loader and every library the binary or an extension links.
  for f in $( (ldd "$multi"; for n in "$lib"/xtables/*.so; do ldd "$n"; done) | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
    case $f in
      */ld-linux-x86-64.so.2) cp -L "$f" "$r/usr/lib64/ld-linux-x86-64.so.2" ;;
      *) cp -L "$f" "$r$lib/${f##*/}" ;;
    esac
  done
  cp /etc/protocols /etc/services "$r/etc/" 2>/dev/null || true
}

# gobuild DIR OUT PKG [GOFLAGS...]: a binary from the build module in DIR.
gobuild() {
  local dir=$1 tmp=$2 pkg=$3; shift 3
  (cd "$dir" && go build -trimpath "$@" -o "$tmp" "$pkg")
}

build_runtime() {
  local a=$root/hack/artifacts t0=$SECONDS b p
  local bins=(containerd containerd-shim-runc-v2 ctr runc bridge host-local portmap loopback)
  local stampval; stampval=$( (stamp "$a/containerd"; stamp "$a/runc"; stamp "$a/cni"; declare -f build_runtime gobuild) | sha256sum | cut -d' ' -f1)
  if fresh runtime "$stampval" "${bins[@]}"; then echo "runtime: up to date in $out"; return; fi
  local cv rv nv
  cv=$(cd "$a/containerd" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
  rv=$(cd "$a/runc" && go list -m -f '{{.Version}}' github.com/opencontainers/runc)
  nv=$(cd "$a/cni" && go list -m -f '{{.Version}}' github.com/containernetworking/plugins)
  command -v gcc >/dev/null || { echo "runtime: gcc is missing (runc is cgo): run make deps (hack/packages.txt)" >&2; exit 1; }
  local cld="-s -w -X github.com/containerd/containerd/v2/version.Version=$cv -X github.com/containerd/containerd/v2/version.Revision=tricenter-$cv"
  for b in containerd containerd-shim-runc-v2 ctr; do
    echo "==> building $b $cv"
    gobuild "$a/containerd" "$out/.$b.tmp" "github.com/containerd/containerd/v2/cmd/$b" -ldflags "$cld"
    install_bin "$out/.$b.tmp" "$b"
  done
  # runc's nsenter is C: cgo, linked statically so it runs on any host.
  echo "==> building runc $rv (static)"
  CGO_ENABLED=1 gobuild "$a/runc" "$out/.runc.tmp" github.com/opencontainers/runc \
    -tags "seccomp netgo osusergo" -ldflags "-s -w -X main.version=${rv#v} -extldflags -static"
  install_bin "$out/.runc.tmp" runc
  for p in main/bridge ipam/host-local meta/portmap main/loopback; do
    echo "==> building CNI plugin ${p#*/} $nv"
    gobuild "$a/cni" "$out/.${p#*/}.tmp" "github.com/containernetworking/plugins/plugins/$p" \
      -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$nv"
    install_bin "$out/.${p#*/}.tmp" "${p#*/}"
  done
  echo "$stampval" > "$out/.runtime.stamp"
  took "$t0" "runtime (containerd $cv, runc $rv, CNI plugins $nv)"
}

# build_agent: the servers' own programs from this checkout, the node BGP
# agent and the etcd snapshot job (the Go build cache makes a rebuild take
# seconds; -trimpath keeps the bytes reproducible).
build_agent() {
  local b
  for b in tricenter-bgp tricenter-snapshot; do
    echo "==> building $b"
    (cd "$root" && go build -trimpath -ldflags='-s -w' -o "$out/.$b.tmp" "./cmd/$b")
    install_bin "$out/.$b.tmp" "$b"
  done
}

# build_probe: the gates' workload (cmd/tricenter-probe) as an image.
build_probe() {
  echo "==> building the probe image $PROBE_IMAGE"
  local rootfs; rootfs=$(mktemp -d "$out/.probe-root.XXXXXX"); chmod 0755 "$rootfs"
  (cd "$root" && go build -trimpath -ldflags='-s -w' -o "$rootfs/tricenter-probe" ./cmd/tricenter-probe)
  chmod 0755 "$rootfs/tricenter-probe"
  oci_image "$rootfs" "$PROBE_IMAGE" /tricenter-probe 65534:65534 "8080/tcp" probe.oci.tar
  rm -rf "$rootfs"
}

# build_lb: the load-balancer controller (cmd/tricenter-lb) as an image.
build_lb() {
  echo "==> building the load-balancer controller image $LB_IMAGE"
  local rootfs; rootfs=$(mktemp -d "$out/.lb-root.XXXXXX"); chmod 0755 "$rootfs"
  (cd "$root" && go build -trimpath -ldflags='-s -w' -o "$rootfs/tricenter-lb" ./cmd/tricenter-lb)
  chmod 0755 "$rootfs/tricenter-lb"
  oci_image "$rootfs" "$LB_IMAGE" /tricenter-lb 65534:65534 "8080/tcp" lb.oci.tar
  rm -rf "$rootfs"
}

for p in "${parts[@]}"; do
  case "$p" in
    etcd | kubernetes | runtime | pause | coredns | agent | probe | lb | kubeadm) ;;
    *) echo "unknown artifact $p: use etcd, kubernetes, runtime, pause, coredns, agent, probe, lb or kubeadm" >&2; exit 2 ;;
  esac
done
# One build at a time writes the directory and its manifest.
exec 9> "$out/.lock"
flock -n 9 || { echo "waiting for another build.sh writing $out"; flock 9; }
for p in "${parts[@]}"; do build_"$p"; done
prune
manifest
echo "artifacts in $out:"; cat "$out/SHA256SUMS"
