#!/usr/bin/env bash
# Writes copies of the system FFmpeg's pkg-config files without their
# `Libs.private`/`Requires.private` lines into .build/ffmpeg-pkgconfig/
# (gitignored), where `.cargo/config.toml` points FFMPEG_PKG_CONFIG_PATH.
#
# Why: rsmpeg's build (rusty_ffmpeg) probes pkg-config with `--static`, and
# Debian's .pc files list ~90 private libraries whose -dev packages are not
# installed, so linking would fail. Without them it links the shared
# libraries. Idempotent; run by scripts/install-deps.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.build/ffmpeg-pkgconfig"
mkdir -p "$out"
src=""
for d in $(pkg-config --variable pc_path pkg-config 2>/dev/null | tr ':' ' ') \
  /usr/lib/x86_64-linux-gnu/pkgconfig /usr/lib/aarch64-linux-gnu/pkgconfig /usr/lib/pkgconfig; do
  if [ -e "$d/libavcodec.pc" ]; then src="$d"; break; fi
done
if [ -z "$src" ]; then
  echo "ffmpeg-pkgconfig: libavcodec.pc not found (install libavcodec-dev etc.: scripts/install-deps.sh)" >&2
  exit 1
fi
for f in "$src"/libav*.pc "$src"/libsw*.pc "$src"/libpostproc.pc; do
  [ -e "$f" ] || continue
  tmp="$out/.$(basename "$f").tmp"
  grep -v -E '^(Libs|Requires)\.private' "$f" > "$tmp"
  if cmp -s "$tmp" "$out/$(basename "$f")"; then rm -f "$tmp"; else mv "$tmp" "$out/$(basename "$f")"; fi
done
