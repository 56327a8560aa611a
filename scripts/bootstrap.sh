#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: apt packages, then a virtualenv
# with the project installed. Safe to run again; does nothing that is done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-pip    # the harness itself
  gcc-arm-none-eabi picolibc-arm-none-eabi libnewlib-arm-none-eabi  # services and firmware
  qemu-system-arm iproute2            # emulated boards; their networks (ip netns, bridges, TAP devices; off-loopback tests)
  clang libclang-rt-dev               # libFuzzer and sanitizers for the firmware parsers (tests/firmware_host)
  mosquitto                           # MQTT broker (gateway northbound API)
  docker-registry                     # OCI registry for the far-edge path
  gcc autoconf automake               # build DTLSSocket (tinydtls) from its source: DTLS-PSK on the CoAP path
  tshark                              # reads the bundles' pcap-ng captures (tests, replays)
  gdb-multiarch                       # debugger for replays (--gdb) and its tests
  ser2net                             # RFC 2217 console server of the local labgrid lab (tests/lab)
  chromium                            # headless browser the report and fleet-page tests open
)
VENV=${HIL_VENV:-.venv}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Node.js runs the independent LwM2M peer of the interop tests (tests/interop).
# Checked by command, not by package: a machine may carry another build of
# Node.js (with npm inside) that Debian's npm package conflicts with.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing apt packages: ${missing[*]}"
  as_root apt-get update -qq
  # policy-rc.d keeps Debian from starting the system mosquitto/registry services:
  # the harness runs its own instances on free ports.
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.embserve-hil-installed"
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python packages into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # dev: what the tests need besides the package; labgrid and xdist: shared benches, many at once;
  # report: the HTML report's plugin and plots (readings, execution metrics); dtls: DTLS-PSK on the CoAP path (DTLSSocket, built here)
  "$VENV/bin/pip" install -q -e ".[dev,labgrid,xdist,report,dtls]"
  echo "$want" > "$stamp"
fi

# The interop tests' npm packages, pinned by tests/interop/package-lock.json;
# installed again only when the lock file changes.
interop=tests/interop
if command -v npm >/dev/null && [ -f "$interop/package-lock.json" ]; then
  stamp="$interop/node_modules/.embserve-hil-installed"
  want=$(sha256sum "$interop/package-lock.json" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing npm packages into $interop/node_modules"
    npm ci --prefix "$interop" --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
  fi
fi
