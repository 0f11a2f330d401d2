#!/usr/bin/env bash
# Write a lighttpd.conf for an mvx run from lighttpd.conf.in.
#   make_conf.sh DOCROOT PORT TMPDIR [OUT]    (OUT defaults to TMPDIR/lighttpd.conf; prints its path)
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 DOCROOT PORT TMPDIR [OUT]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
docroot=$(cd "$1" && pwd)
port=$2
mkdir -p "$3"
tmp=$(cd "$3" && pwd)
out=${4:-$tmp/lighttpd.conf}
case "$port" in ''|*[!0-9]*) echo "make_conf: bad port: $port" >&2; exit 2 ;; esac
sed -e "s|@DOCROOT@|$docroot|g" -e "s|@PORT@|$port|g" -e "s|@TMPDIR@|$tmp|g" "$here/lighttpd.conf.in" >"$out"
echo "$out"
