#!/usr/bin/env bash
# Builds the web panels' third-party assets: installs the pinned npm
# packages of web/package-lock.json into web/node_modules (`npm ci`) and
# copies the hls.js player and the uPlot chart library into web/dist/
# (gitignored), which ugc-server serves at /vendor/<file>. Skips npm when the lock file has not changed since the
# last install. Our own HTML/CSS/JS in web/ needs no build step.
set -euo pipefail
cd "$(dirname "$0")/../web"

stamp=node_modules/.ugc-lock-stamp
if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
  echo "web: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
mkdir -p dist
cp node_modules/hls.js/dist/hls.min.js dist/hls.min.js
cp node_modules/hls.js/LICENSE dist/hls.js.LICENSE 2>/dev/null || true
echo "web: dist/hls.min.js ($(node -p 'require("./node_modules/hls.js/package.json").version'))"
# The panel's charts.
cp node_modules/uplot/dist/uPlot.iife.min.js dist/uPlot.iife.min.js
cp node_modules/uplot/dist/uPlot.min.css dist/uPlot.min.css
cp node_modules/uplot/LICENSE dist/uPlot.LICENSE 2>/dev/null || true
echo "web: dist/uPlot.iife.min.js ($(node -p 'require("./node_modules/uplot/package.json").version'))"
