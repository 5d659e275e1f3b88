#!/usr/bin/env bash
# Installs the Debian packages listed in hack/packages.txt that are missing.
# Used by `make deps` (and so by `make test`); safe to re-run.
# Exits 0 only when every listed package is installed afterwards: a user
# that cannot install (not root, no dpkg/apt-get, apt-get fails) gets a
# non-zero exit naming the missing packages.
# TRICENTER_POLICY_RC_D overrides /usr/sbin/policy-rc.d (for hack/deps_test.go).
set -euo pipefail
cd "$(dirname "$0")/.."

missing_packages() {
  local pkg
  while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done < hack/packages.txt
}

fail() {
  echo "deps: $1" >&2
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
}

mapfile -t missing < <(missing_packages)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if ! command -v dpkg-query >/dev/null; then
  fail "dpkg-query not found: the tests need a Debian-based machine"
fi
if [[ $(id -u) -ne 0 ]]; then
  fail "not root, so they cannot be installed"
fi
command -v apt-get >/dev/null || fail "apt-get not found"
echo "==> apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps package scripts from starting daemons; tests start their own.
policy=${TRICENTER_POLICY_RC_D:-/usr/sbin/policy-rc.d}
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq || fail "apt-get update failed (exit $?)"
log=$(mktemp)
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  fail "apt-get install failed"
fi
rm -f "$log"
mapfile -t missing < <(missing_packages)
[[ ${#missing[@]} -eq 0 ]] || fail "still not installed after apt-get install"
