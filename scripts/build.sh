#!/usr/bin/env bash
# Build the standalone binary from a clean checkout, prove it is whole, and pack the release:
#
#   bash scripts/build.sh
#     dist/bmo-<version>-<os>-<arch>/          the build: the `bmo` executable and _internal/
#     dist/bmo -> bmo-<version>-<os>-<arch>/bmo   what you run (and scripts/smoke.sh tests)
#     dist/bmo-<version>-<os>-<arch>.tar.gz    the release; scripts/install.sh installs it
#     dist/bmo-<version>-<os>-<arch>.tar.gz.sha256
#
# <os> is linux or darwin, <arch> x86_64 or arm64. The binary runs on the glibc it was built
# against or newer (the release workflow builds on Debian 11: glibc 2.31); the floor is printed
# at the end on Linux.
#
# It makes its own virtualenv (build/venv, git-ignored) with only the project's runtime
# dependencies and PyInstaller, so nothing from a dev environment (pytest, openai, mypy…) can leak
# into the binary. pip's cache (~/.cache/pip) is reused; set BMO_BUILD_FRESH=1 to recreate the venv.
# PYTHON picks the interpreter (default python3); PyInstaller needs one built with a shared
# libpython (--enable-shared), which distribution and python.org builds are.
#
# It fails (non-zero, with the reason) when a module is missing: a bmo module, a module a bmo
# module imports, a C extension that would silently fall back to pure Python (aiohttp's parser,
# uvloop, orjson…), or the packaged defaults; and when the binary cannot print its version,
# validate a config or serve a chat on an empty home.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/stop-binary.sh
. scripts/stop-binary.sh
PYTHON=${PYTHON:-python3}
VENV=build/venv
WORK=build/pyinstaller
VERSION=$(sed -nE 's/^__version__ = "(.*)"/\1/p' internal/bmo/__init__.py)
OS=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in
  x86_64 | amd64) ARCH=x86_64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) ARCH=$(uname -m) ;;
esac
NAME=bmo-$VERSION-$OS-$ARCH
DIR=dist/$NAME
BIN=dist/bmo
TARBALL=dist/$NAME.tar.gz
# PyInstaller 6 (the spec's format); built and tested with 6.22.
PYINSTALLER_REQ=${PYINSTALLER_REQ:-"pyinstaller>=6.10,<7"}

die() { echo "build.sh: FAILED: $*" >&2; exit 1; }
step() { echo "==> $*"; }
SECONDS=0

# 1. The build virtualenv -------------------------------------------------------------------
if [ "${BMO_BUILD_FRESH:-0}" = 1 ]; then rm -rf "$VENV"; fi
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
VPY=$ROOT/$VENV/bin/python
step "installing bmo and $PYINSTALLER_REQ into $VENV"
# pip warns about every find-links/index location configured on the machine that does not
# exist; that noise hides real warnings, so drop just those lines (pip's status still counts).
pip_install() {
  "$VPY" -m pip install -q "$@" 2>&1 | { grep -vF 'is ignored: it is neither a file nor a directory' || true; }
}
pip_install --upgrade pip
# A non-editable install of the project pulls exactly its runtime dependencies. The bmo code
# itself is taken from internal/ (pathex in build.spec), so the binary is always this checkout.
# [postgres]: the binary serves a PostgreSQL store too (asyncpg; imported only when store.url is set).
pip_install --upgrade ".[postgres]" "$PYINSTALLER_REQ"
# setuptools writes build/lib and build/bdist.* while building the wheel; they are not ours to keep.
rm -rf build/lib build/bdist.*
"$VPY" - <<'EOF' || die "the build venv cannot import bmo's dependencies"
import sysconfig
import aiohttp, aiosqlite, asyncpg, orjson, rich, typer, yaml  # noqa: F401
if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
    raise SystemExit("this Python has no shared libpython; PyInstaller needs one (PYTHON=...)")
EOF

# 2. PyInstaller --------------------------------------------------------------------------------
step "pyinstaller build.spec"
t0=$SECONDS
rm -rf "$BIN" "$DIR" "$TARBALL" "$TARBALL.sha256"
BMO_DIST_NAME=$NAME "$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath "$WORK" --distpath dist build.spec
[ -x "$DIR/bmo" ] || die "$DIR/bmo was not produced"
ln -s "$NAME/bmo" "$BIN"
echo "    pyinstaller took $((SECONDS - t0)) s"

# 3. Nothing missing -----------------------------------------------------------------------------
step "checking PyInstaller's warn file and the archive"
WARN=$WORK/build/warn-build.txt
[ -f "$WARN" ] || die "no warn file at $WARN"
# A bmo module that was not found, or any module that bmo itself (or the entry script, named by
# its path) imports and PyInstaller could not find or was told to exclude. Modules that bmo
# imports optionally and that may legitimately be absent go in ALLOW (a regex), with a reason.
ALLOW=${BMO_BUILD_ALLOW_MISSING:-'^$'}
by_bmo="(bmo(\.[A-Za-z0-9_.]+)?|[^ ,]*/cmd/bmo/main\.py) \("
bad=$(grep -E "^(missing|excluded) module named '?bmo[. ']|^(missing|excluded) module named .* imported by (.*, )?$by_bmo" \
  "$WARN" | grep -vE "$ALLOW" || true)
[ -z "$bad" ] || die "modules missing from the binary (from $WARN):
$bad"

# The C extensions below all have pure-Python fallbacks (or are loaded by name), so a binary
# without them would run, only slower: check the folder instead of trusting a smoke test.
expected=$("$VPY" - <<'EOF'
import importlib
mods = [
    "aiohttp._http_parser", "aiohttp._http_writer", "multidict._multidict", "yarl._quoting_c",
    "frozenlist._frozenlist", "propcache._helpers_c", "uvloop.loop", "orjson.orjson", "yaml._yaml",
    "asyncpg.protocol.protocol", "asyncpg.pgproto.pgproto",  # no fallback: without them no PostgreSQL store
]
for name in mods:
    try:
        m = importlib.import_module(name)
    except ImportError:
        continue  # not built for this platform, so not expected in the binary either
    f = getattr(m, "__file__", "") or ""
    if f.endswith((".so", ".pyd")):
        print(name.replace(".", "/") + ".")
EOF
)
for want in $expected; do
  compgen -G "$DIR/_internal/$want*" >/dev/null || die "$want* is not in $DIR/_internal"
done
# The packaged defaults and the web console's files must be exactly the source files.
for f in internal/bmo/defaults/*.yaml internal/bmo/defaults/agents/*.yaml internal/bmo/ui/*.{html,js,css}; do
  rel=${f#internal/}
  cmp -s "$f" "$DIR/_internal/$rel" || die "$rel is not in $DIR/_internal (or differs from $f)"
done
# What must not be there: pydantic (typer < 0.29 does not need it; see build.spec).
if compgen -G "$DIR/_internal/pydantic*" >/dev/null; then die "pydantic is in $DIR/_internal"; fi

# 4. The binary works -----------------------------------------------------------------------------
step "running $BIN"
tmp=$(mktemp -d)
pid=
cleanup() {
  stop_binary "$pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
# A clean environment: no venv, no PYTHONPATH, nothing from this shell. BMO_API_KEY makes the
# server require that key (and not mint one on first start), whatever the auth defaults are.
key=sk-bmo-build-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
clean_env=(env -i PATH=/usr/bin:/bin HOME="$tmp" BMO_HOME="$tmp/home" BMO_API_KEY="$key" COLUMNS=200)
run() { "${clean_env[@]}" "$ROOT/$BIN" "$@"; }

out=$(run version) || die "'bmo version' failed: $out"
grep -qF "bmo $VERSION" <<<"$out" || die "'bmo version' printed '$out', expected bmo $VERSION"
run config validate >/dev/null || die "'bmo config validate' failed on an empty home"
run agents list --json | grep -q '"default"' || die "'bmo agents list' does not show the default agent"

# A short serve: every lazily imported module of the request path runs once.
# Started directly (not through a function) so that $! is the binary's own pid.
"${clean_env[@]}" "$ROOT/$BIN" serve --port 0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
url=
for _ in $(seq 1 300); do
  url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+/v1' "$tmp/out" | head -n1 || true)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$url" ] || die "'bmo serve' did not start:
$(cat "$tmp/out" "$tmp/err")"
curl -fsS "${url%/v1}/health" | grep -q '"ok"' || die "/health did not answer ok"
answer=$(curl -fsS "$url/chat/completions" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"model":"default","messages":[{"role":"user","content":"build check"}]}') \
  || die "a chat completion failed:
$(cat "$tmp/err")"
grep -q 'build check' <<<"$answer" || die "unexpected chat answer: $answer"
kill -TERM "$pid"
for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && die "'bmo serve' still runs 15 s after SIGTERM"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || die "'bmo serve' exited $rc on SIGTERM:
$(cat "$tmp/err")"
if grep -qiE 'Traceback|ModuleNotFoundError|ImportError' "$tmp/err"; then
  die "'bmo serve' logged an error:
$(cat "$tmp/err")"
fi

# 5. The release tarball and its checksum ----------------------------------------------------------
step "packing $TARBALL"
# Owner and order are the packer's business, not the installer's: root-owned, sorted by name.
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
  tar -C dist --owner=0 --group=0 --numeric-owner --sort=name -cf - "$NAME" | gzip -9n >"$TARBALL"
else
  tar -C dist -cf - "$NAME" | gzip -9n >"$TARBALL"
fi
sha() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
(cd dist && sha "$NAME.tar.gz" >"$NAME.tar.gz.sha256")

size=$(du -sk "$DIR" | cut -f1)
tsize=$(wc -c <"$TARBALL" | tr -d ' ')
echo
echo "built $DIR: $((size / 1024)) MiB on disk; $BIN -> $NAME/bmo"
echo "release $TARBALL: $((tsize / 1024 / 1024)) MiB ($tsize bytes), checksum in $TARBALL.sha256"
if [ "$OS" = linux ] && command -v objdump >/dev/null; then
  floor=$(find "$DIR" -type f \( -name '*.so*' -o -name bmo \) -exec objdump -T {} + 2>/dev/null \
    | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sort -uV | tail -n1)
  echo "needs ${floor:-GLIBC_?} or newer (built on $(ldd --version 2>/dev/null | head -n1))"
fi
echo "$BIN version: $out (built in ${SECONDS} s)"
