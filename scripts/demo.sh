#!/usr/bin/env bash
# The main job on the embedded defaults: make sample broadcasts, index them (and the real sample
# clips when ../shared/data is present) into SQLite with the shipped model, search, export SRT/WebVTT.
set -euo pipefail
cd "$(dirname "$0")/.."
TV=.venv/bin/tvcaption
OUT=demo
DB="sqlite:///$OUT/demo.db"
mkdir -p "$OUT"
[ -f "$OUT/synthtv/broadcasts/bcast_000.mp4" ] || \
  $TV synth "$OUT/synthtv" --train 0 --val 0 --test 0 --broadcasts 2 --broadcast-seconds 60 --seed 7
inputs=("$OUT/synthtv/broadcasts")
[ -d ../shared/data/scenes ] && inputs+=(../shared/data/scenes/bikes.mp4 ../shared/data/scenes/goldeneye-vfr-drop3.mp4)
$TV index "${inputs[@]}" --db "$DB"
$TV search "cat" --db "$DB" --limit 5
$TV search "bicycle" --db "$DB" --limit 5
$TV export --all --format srt --out "$OUT/subtitles" --db "$DB"
$TV export --all --format vtt --out "$OUT/subtitles" --db "$DB"
echo "demo: database $OUT/demo.db, subtitles in $OUT/subtitles/"
