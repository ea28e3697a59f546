#!/usr/bin/env bash
# Puts ONNX Runtime's shared library where the tests look for it:
#   .cache/onnxruntime/<version>/libonnxruntime.so.1
# It comes from the onnxruntime-node npm package, fetched with `npm pack`
# (which checks the registry's integrity hash) and never `npm install`, which
# would run the package's download script. Prints the library's path.
set -euo pipefail
version=${ONNXRUNTIME_VERSION:-1.24.1}
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/onnxruntime/$version"
lib="$dest/libonnxruntime.so.1"
if [ ! -s "$lib" ]; then
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) echo "no ONNX Runtime build for $(uname -m) in onnxruntime-node" >&2; exit 1 ;;
  esac
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
  mkdir -p "$dest"
  tar -xzf "$tmp/onnxruntime-node-$version.tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  mv "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
  mv "$lib.tmp" "$lib"
fi
echo "$lib"
