#!/usr/bin/env bash
# Install a bmo release: no Python needed, only bash, tar, gzip and sha256sum (or shasum).
#
#   bash scripts/install.sh dist/bmo-0.1.0-linux-x86_64.tar.gz
#   bash scripts/install.sh https://github.com/OWNER/bmo/releases/download/v0.1.0/bmo-0.1.0-linux-x86_64.tar.gz
#   curl -fsSL https://…/install.sh | bash -s -- https://…/bmo-0.1.0-linux-x86_64.tar.gz
#
# The release's checksum is checked before anything is unpacked: RELEASE.sha256 beside it (a file,
# or the same URL + .sha256), or --sha256 HEX. The release unpacks into
# PREFIX/lib/bmo/bmo-<version>-<os>-<arch>/ and PREFIX/bin/bmo links to it (PREFIX: --prefix,
# else $BMO_PREFIX, else ~/.local). Earlier versions stay where they are (a server still running
# one keeps working); `rm -r ~/.local/lib/bmo/bmo-<old version>-*` when it is stopped.
# A URL needs curl or wget. Exit codes: 0 installed, 1 failed (nothing changed), 2 usage.
set -euo pipefail

usage() {
  echo "usage: $0 [--prefix DIR] [--sha256 HEX] RELEASE   (a bmo-<version>-<os>-<arch>.tar.gz file or URL)" >&2
  exit 2
}
die() { echo "install.sh: $*" >&2; exit 1; }

prefix=${BMO_PREFIX:-${HOME:?HOME is not set}/.local}
want_sha=
release=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
    --sha256) [ $# -ge 2 ] || usage; want_sha=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) [ -z "$release" ] || usage; release=$1; shift ;;
  esac
done
[ -n "$release" ] || usage

file=${release##*/}
name=${file%.tar.gz}
[[ "$file" == bmo-*-*-*.tar.gz ]] || die "$file is not a bmo release (bmo-<version>-<os>-<arch>.tar.gz)"

# This machine, named as the release names it.
os=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
[[ "$name" == *-"$os"-"$arch" ]] || die "$file is not for this machine ($os-$arch)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bmo-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fetch() {  # URL DEST
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed: download $1 yourself and give me the file"
  fi
}

case "$release" in
  http://* | https://*)
    echo "downloading $release"
    fetch "$release" "$tmp/$file" || die "cannot download $release"
    if [ -z "$want_sha" ]; then
      fetch "$release.sha256" "$tmp/$file.sha256" || die "cannot download $release.sha256 (or pass --sha256 HEX)"
    fi
    ;;
  *)
    [ -f "$release" ] || die "no such file: $release"
    cp "$release" "$tmp/$file"
    if [ -z "$want_sha" ]; then
      [ -f "$release.sha256" ] || die "no checksum file $release.sha256 (or pass --sha256 HEX)"
      cp "$release.sha256" "$tmp/$file.sha256"
    fi
    ;;
esac

if [ -z "$want_sha" ]; then
  want_sha=$(awk 'NR == 1 {print $1}' "$tmp/$file.sha256")
fi
if command -v sha256sum >/dev/null 2>&1; then
  got_sha=$(sha256sum "$tmp/$file" | awk '{print $1}')
elif command -v shasum >/dev/null 2>&1; then
  got_sha=$(shasum -a 256 "$tmp/$file" | awk '{print $1}')
else
  die "neither sha256sum nor shasum is installed: cannot check the release"
fi
want_sha=$(printf '%s' "$want_sha" | tr '[:upper:]' '[:lower:]')
[ "${#want_sha}" = 64 ] || die "the expected checksum is not a SHA-256: '$want_sha'"
[ "$got_sha" = "$want_sha" ] || die "checksum mismatch for $file: expected $want_sha, got $got_sha (not installed)"
echo "checksum ok: $got_sha"

mkdir -p "$tmp/x"
tar -xzf "$tmp/$file" -C "$tmp/x" || die "cannot unpack $file"
[ -x "$tmp/x/$name/bmo" ] || die "$file does not hold $name/bmo"
"$tmp/x/$name/bmo" version >/dev/null || die "the unpacked bmo does not run on this machine (glibc too old?)"

lib=$prefix/lib/bmo
bin=$prefix/bin
mkdir -p "$lib" "$bin"
if [ -e "$lib/$name" ]; then  # the same version again: replace it whole
  mv "$lib/$name" "$tmp/old"
fi
mv "$tmp/x/$name" "$lib/$name"
ln -sfn "../lib/bmo/$name/bmo" "$bin/bmo"
echo "installed $("$bin/bmo" version) as $bin/bmo -> $lib/$name/bmo"
case ":${PATH:-}:" in
  *":$bin:"*) ;;
  *) echo "note: $bin is not on your PATH; add it, e.g.  export PATH=\"$bin:\$PATH\"" ;;
esac
