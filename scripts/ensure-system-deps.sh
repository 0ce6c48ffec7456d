#!/usr/bin/env bash
# Makes sure the system programs the tests use are present: influxd (InfluxDB 1.x), mosquitto and
# its clients, ffmpeg, chromium, mbpoll (an independent Modbus client, GPL, tests only), a CJK
# font for the dashboard's screenshots, docker-compose (validates the compose files without an
# engine), erl (Erlang's parser reads the generated EMQX acl.conf as EMQX does) and a PostgreSQL
# server (the PostgreSQL operational store's tests start their own cluster, test/helpers/postgres.ts).
# As root it installs the missing ones from Debian's packages; otherwise it prints the exact
# command and fails.
set -euo pipefail

declare -A need=(
  [influxd]=influxdb
  [mosquitto_pub]=mosquitto-clients
  [ffmpeg]=ffmpeg
  [chromium]=chromium
  [mbpoll]=mbpoll
  [docker-compose]=docker-compose
  [erl]=erlang-base
)
# mosquitto lives in /usr/sbin, which is not on every PATH.
[ -x /usr/sbin/mosquitto ] || need[__mosquitto]=mosquitto
# PostgreSQL's server binaries live in a versioned dir, /usr/lib/postgresql/<version>/bin, not on PATH.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need[__postgresql]=postgresql
# The dashboard speaks Chinese first: screenshots need a CJK font.
{ command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; } || need[__cjkfont]=fonts-wqy-microhei

missing=()
for bin in "${!need[@]}"; do
  if [[ "$bin" == __* ]] || ! command -v "$bin" >/dev/null 2>&1; then
    missing+=("${need[$bin]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages for the tests: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # Debian starts these as services on install; the tests start their own on free ports.
  for svc in influxdb mosquitto postgresql; do
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
  done
else
  echo "The tests need these Debian packages, which are missing: ${missing[*]}" >&2
  echo "Install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
