#!/usr/bin/env bash
# Refreshes the uPlot chart library that the status page embeds
# (internal/server/web/uPlot.*), from the npm registry with `npm pack`.
set -euo pipefail
version=${1:-1.6.32}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$version" >/dev/null && tar -xzf "uplot-$version.tgz")
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$root/internal/server/web/"
cp "$tmp/package/LICENSE" "$root/internal/server/web/uPlot.LICENSE"
echo "uPlot $version in internal/server/web/"
