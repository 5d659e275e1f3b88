#!/usr/bin/env bash
# Prints the -ldflags -X flags that stamp internal/version (make build):
# the module version, the commit, whether tracked files were modified and
# the commit time. The version is $VERSION when set (a release build),
# else the tag on HEAD, else a Go pseudo-version from the last v* tag
# (v0.0.0-… without one), with +dirty for a modified tree, as the Go
# toolchain stamps it. Outside a Git tree it prints the "dev" stamp.
set -uo pipefail
pkg=github.com/tricenter/terraform-provider-tricenter/internal/version
cd "$(dirname "$0")/.." || exit 1
rev=
# Only this tree's own repository (not one it was unpacked inside).
if [[ $(git rev-parse --show-toplevel 2>/dev/null) == "$(pwd -P)" ]]; then
	rev=$(git rev-parse HEAD 2>/dev/null) || rev=
fi
if [[ -z $rev ]]; then
	echo "-X $pkg.version=${VERSION:-dev}"
	exit 0
fi
modified=false
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	modified=true
fi
when=$(TZ=UTC git show -s --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd HEAD)
version=${VERSION:-}
if [[ -z $version ]]; then
	if version=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null); then
		:
	else
		stamp=$(TZ=UTC git show -s --date=format-local:%Y%m%d%H%M%S --format=%cd HEAD)
		base=$(git describe --tags --abbrev=0 --match 'v[0-9]*.[0-9]*.[0-9]*' HEAD 2>/dev/null) || base=
		if [[ $base =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
			version="v${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.$((BASH_REMATCH[3] + 1))-0.$stamp-${rev:0:12}"
		else
			version="v0.0.0-$stamp-${rev:0:12}"
		fi
	fi
	if [[ $modified == true ]]; then
		version+="+dirty"
	fi
fi
echo "-X $pkg.version=$version -X $pkg.revision=$rev -X $pkg.modified=$modified -X $pkg.commitTime=$when"
