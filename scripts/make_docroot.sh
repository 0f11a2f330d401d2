#!/usr/bin/env bash
# Make a web document root with deterministic content, for lighttpd and sendfile_http runs.
#   bash scripts/make_docroot.sh DIR
# Creates (replacing earlier copies of these files):
#   DIR/index.html          a small HTML page
#   DIR/1k.txt              1024 bytes      } lines of 64 bytes: "<8-digit line number> mvx docroot ..."
#   DIR/64k.txt             65536 bytes     } so the same file always has the same bytes
#   DIR/1m.txt              1048576 bytes   }
#   DIR/dir/                a subdirectory without index.html (lighttpd lists it) with a.txt, b.txt
#   DIR/forbidden.txt       mode 000 (403 from a server running as a non-root user; root
#                           ignores file modes, so a server running as root sends it)
#   DIR/secret.deny         readable, but variants/lighttpd/lighttpd.conf.in denies *.deny: 403 as root too
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir/dir"

# N lines of exactly 64 bytes each.
lines() {
  awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%08d mvx docroot data abcdefghijklmnopqrstuvwxyz 0123456789\n", i }'
}

cat >"$dir/index.html" <<'HTML'
<!DOCTYPE html>
<html><head><title>mvx test docroot</title></head>
<body><h1>mvx test docroot</h1>
<p><a href="1k.txt">1k.txt</a> <a href="64k.txt">64k.txt</a> <a href="1m.txt">1m.txt</a> <a href="dir/">dir/</a></p>
</body></html>
HTML
lines 16 >"$dir/1k.txt"
lines 1024 >"$dir/64k.txt"
lines 16384 >"$dir/1m.txt"
printf 'file a\n' >"$dir/dir/a.txt"
printf 'file b\n' >"$dir/dir/b.txt"
rm -f "$dir/forbidden.txt"
printf 'you should not see this\n' >"$dir/forbidden.txt"
chmod 000 "$dir/forbidden.txt"
printf 'denied by url.access-deny\n' >"$dir/secret.deny"

# Guard against an awk that formats differently.
[ "$(wc -c <"$dir/1k.txt")" -eq 1024 ] && [ "$(wc -c <"$dir/1m.txt")" -eq 1048576 ] ||
  { echo "make_docroot: unexpected file sizes" >&2; exit 1; }
echo "make_docroot: ok ($dir)"
