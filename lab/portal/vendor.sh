#!/bin/sh
# Refresh the browser terminal shipped in lab/portal/static/vendor/ from the npm registry (npm's own
# configuration says which registry). Run by a maintainer at build time, never by reglab at run time;
# commit what it copies. Change the versions here, run it, and say the new ones in README.md.
set -eu
XTERM=6.0.0
FIT=0.11.0
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo '{"name":"reglab-vendor","private":true}' > package.json
npm install --no-audit --no-fund --ignore-scripts "@xterm/xterm@$XTERM" "@xterm/addon-fit@$FIT" >/dev/null
out="$here/static/vendor"
mkdir -p "$out"
cp node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css "$out/"
cp node_modules/@xterm/xterm/LICENSE "$out/xterm.LICENSE"
cp node_modules/@xterm/addon-fit/lib/addon-fit.js "$out/"
cp node_modules/@xterm/addon-fit/LICENSE "$out/addon-fit.LICENSE"
printf '@xterm/xterm %s\n@xterm/addon-fit %s\n' "$XTERM" "$FIT" > "$out/VERSIONS"
sed -i '/sourceMappingURL/d' "$out/xterm.js" "$out/addon-fit.js"
echo "copied into $out: $(cat "$out/VERSIONS" | tr '\n' ' ')"
