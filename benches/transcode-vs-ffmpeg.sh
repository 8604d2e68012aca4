#!/usr/bin/env bash
# The 1080p30 3-rung ladder (1080p 4000k / 720p 2000k / 360p 1000k + AAC),
# ugc's Ladder vs the ffmpeg CLI (split + scale + three libx264 outputs),
# same source file, same x264 preset, side by side, for each preset in
# PRESETS. Prints fps, CPU seconds per media second, and PSNR/SSIM of every
# rung against the source (scaled to the rung's size), and the ratios.
#
#   benches/transcode-vs-ffmpeg.sh                 # 10 s source, veryfast + superfast
#   SECONDS_OF_MEDIA=20 PRESETS="superfast" benches/transcode-vs-ffmpeg.sh
#   SOURCE=my_1080p30.flv benches/transcode-vs-ffmpeg.sh   # your own source
#
# Needs ffmpeg/ffprobe and the FFmpeg -dev packages (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_MEDIA=${SECONDS_OF_MEDIA:-10}
PRESETS=${PRESETS:-"veryfast superfast"}
CACHE=${CACHE:-$HOME/.cache/ugc}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

cargo build --quiet --release -p ugc-codec --features ffmpeg --example ladder_file
ladder="$CARGO_TARGET_DIR/release/examples/ladder_file"

# The source: 1080p30 H.264 High 5 Mbps + AAC 128k, 2 s GOP, in FLV (what an
# RTMP publisher sends). testsrc2 plus film-like grain, so rate control has
# real work to do.
src=${SOURCE:-$CACHE/bench-media/src_1080p30_5M_${SECONDS_OF_MEDIA}s.flv}
if [ -n "${SOURCE:-}" ]; then
  SECONDS_OF_MEDIA=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$src")
elif [ ! -e "$src" ]; then
  mkdir -p "$(dirname "$src")"
  echo "making the ${SECONDS_OF_MEDIA} s 1080p30 source (once)"
  ffmpeg -hide_banner -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30,noise=alls=8:allf=t" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" \
    -t "$SECONDS_OF_MEDIA" -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 5000k -maxrate 5000k \
    -bufsize 10000k -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 128k -f flv "$src.tmp"
  mv "$src.tmp" "$src"
fi

rungs="1080p:1920:1080 720p:1280:720 360p:640:360"

# "wall user sys" of a command.
timed() { /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err"; exit 1; }; cat "$work/time"; }

# PSNR (average, dB) and SSIM (All) of $1 (raw h264 at 30 fps or a file) vs the source scaled to WxH.
quality() {
  local file=$1 w=$2 h=$3 fmt=()
  [[ $file == *.h264 ]] && fmt=(-framerate 30 -f h264)
  ffmpeg -hide_banner -nostats -i "$src" "${fmt[@]}" -i "$file" -lavfi \
    "[0:v]scale=${w}:${h}:flags=bicubic,setpts=N/(30*TB),split[r1][r2];[1:v]setpts=N/(30*TB),split[d1][d2];[d1][r1]psnr;[d2][r2]ssim" \
    -f null - 2>&1 | awk '/PSNR/ {for(i=1;i<=NF;i++) if ($i ~ /^average:/) {sub("average:","",$i); p=$i}}
                         /SSIM/ {for(i=1;i<=NF;i++) if ($i ~ /^All:/) {sub("All:","",$i); s=$i}}
                         END {printf "%s %s", p, s}'
}

pictures=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$src")
echo "source: $src ($pictures pictures, ${SECONDS_OF_MEDIA} s); load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
printf '\n%-10s %-7s %8s %10s %9s %6s   %s\n' preset tool fps "cpu s/s" "wall s" cores "PSNR dB / SSIM per rung (1080p 720p 360p)"
for preset in $PRESETS; do
  # ffmpeg CLI: one decode, split, scale, three libx264 + AAC outputs.
  fc="[0:v]split=3[v1][v2][v3];[v1]scale=1920:1080[o1];[v2]scale=1280:720[o2];[v3]scale=640:360[o3]"
  read -r wall user sys < <(timed ffmpeg -hide_banner -nostats -v error -y -i "$src" -vsync passthrough -filter_complex "$fc" \
    -map '[o1]' -map 0:a -c:v libx264 -preset "$preset" -profile:v high -b:v 4000k -maxrate 4000k -bufsize 8000k -g 60 -sc_threshold 0 -c:a aac -b:a 192k "$work/cli-1080p.mp4" \
    -map '[o2]' -map 0:a -c:v libx264 -preset "$preset" -profile:v high -b:v 2000k -maxrate 2000k -bufsize 4000k -g 60 -sc_threshold 0 -c:a aac -b:a 128k "$work/cli-720p.mp4" \
    -map '[o3]' -map 0:a -c:v libx264 -preset "$preset" -profile:v high -b:v 1000k -maxrate 1000k -bufsize 2000k -g 60 -sc_threshold 0 -c:a aac -b:a 96k "$work/cli-360p.mp4")
  cli_fps=$(echo "$pictures $wall" | awk '{printf "%.1f", $1/$2}')
  cli_cpu=$(echo "$user $sys $SECONDS_OF_MEDIA" | awk '{printf "%.2f", ($1+$2)/$3}')
  q=""; for r in $rungs; do IFS=: read -r n w h <<<"$r"; q="$q $(quality "$work/cli-$n.mp4" "$w" "$h" | awk '{printf "%.2f/%.4f", $1, $2}')"; done
  cli_cores=$(echo "$user $sys $wall" | awk '{printf "%.2f", ($1+$2)/$3}')
  printf '%-10s %-7s %8s %10s %9s %6s  %s\n' "$preset" ffmpeg "$cli_fps" "$cli_cpu" "$wall" "$cli_cores" "$q"

  read -r wall user sys < <(timed "$ladder" "$src" "$work" "$preset")
  ugc_fps=$(echo "$pictures $wall" | awk '{printf "%.1f", $1/$2}')
  ugc_cpu=$(echo "$user $sys $SECONDS_OF_MEDIA" | awk '{printf "%.2f", ($1+$2)/$3}')
  q=""; for r in $rungs; do IFS=: read -r n w h <<<"$r"; q="$q $(quality "$work/$n.h264" "$w" "$h" | awk '{printf "%.2f/%.4f", $1, $2}')"; done
  ugc_cores=$(echo "$user $sys $wall" | awk '{printf "%.2f", ($1+$2)/$3}')
  printf '%-10s %-7s %8s %10s %9s %6s  %s\n' "$preset" ugc "$ugc_fps" "$ugc_cpu" "$wall" "$ugc_cores" "$q"
  echo "$preset: ugc/ffmpeg fps ratio $(echo "$ugc_fps $cli_fps" | awk '{printf "%.2f", $1/$2}'), real time (>= 30 fps): $(echo "$ugc_fps" | awk '{print ($1>=30)?"yes":"no"}')"
  # At ugc's CPU per picture, all cores busy is the most any scheduling buys.
  echo "$preset: CPU per picture ugc/ffmpeg $(echo "$ugc_cpu $cli_cpu" | awk '{printf "%.2f", $1/$2}'); fps ratio with every core busy at that CPU: $(echo "$cli_cpu $ugc_cpu $cli_cores" | awk -v n="$(nproc)" '{printf "%.2f", n/$3*$1/$2}')"
done
