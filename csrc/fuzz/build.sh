#!/usr/bin/env bash
# Build the libFuzzer targets with AddressSanitizer and UndefinedBehaviorSanitizer.
# Needs clang with libFuzzer (Debian: apt-get install clang-14 libclang-rt-14-dev).
# Usage: csrc/fuzz/build.sh [outdir]   (default csrc/fuzz/out)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
out="${1:-$here/out}"
cc="${CC:-$(command -v clang-14 || command -v clang)}"
mkdir -p "$out"
flags=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -std=c11 -Wall -Wextra -Werror -I"$src")
engine=()
for f in "$src"/*.c; do
  case "$(basename "$f")" in module.c|unpickler.c|jail.c) ;; *) engine+=("$f") ;; esac
done
"$cc" "${flags[@]}" "$here/fuzz_scan.c" "${engine[@]}" -o "$out/fuzz_scan"
"$cc" "${flags[@]}" "$here/fuzz_inflate.c" "$src/inflate.c" -o "$out/fuzz_inflate"
py_inc="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
py_lib="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
py_ver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
"$cc" "${flags[@]}" -I"$py_inc" "$here/fuzz_unpickle.c" "$src/unpickler.c" "${engine[@]}" \
     -L"$py_lib" -Wl,-rpath,"$py_lib" -lpython"$py_ver" -o "$out/fuzz_unpickle"
echo "built: $out/fuzz_scan $out/fuzz_inflate $out/fuzz_unpickle"
