#!/bin/sh
# deployments/docker/build.sh OUTDIR BINARY...: builds natter binaries as
# the container image does (the Dockerfile runs this script): static
# (CGO_ENABLED=0), without file system paths (-trimpath) and without symbol
# tables (-s -w), from the go.work workspace at the repository root. Each
# binary is written to OUTDIR/BINARY. GOOS and GOARCH are honoured.
#
# Binaries: natter-gateway natter-user natter-offline natter-friend
# natter-group natter
set -eu

usage() {
	echo "usage: build.sh OUTDIR BINARY..." >&2
	echo "binaries: natter-gateway natter-user natter-offline natter-friend natter-group natter" >&2
	exit 2
}

[ $# -ge 2 ] || usage
out=$1
shift
root=$(cd "$(dirname "$0")/../.." && pwd)

pkgs=
for bin in "$@"; do
	case $bin in
	natter-gateway) pkg=./gateway/cmd/natter-gateway ;;
	natter-user | natter-offline | natter-friend | natter-group)
		pkg=./services/${bin#natter-}/cmd/$bin
		;;
	natter) pkg=./tools/cmd/natter ;;
	*)
		echo "build.sh: unknown binary \"$bin\"" >&2
		usage
		;;
	esac
	pkgs="$pkgs $pkg"
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
# One go build for all: the packages compile in parallel. Each main package
# is written as OUTDIR/<its directory's name>, which is the binary's name.
# shellcheck disable=SC2086
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/" $pkgs
