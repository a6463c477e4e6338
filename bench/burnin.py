"""Real clips with on-screen text burnt in by ffmpeg: the ground truth for the text analyser.

Each clip of ``../shared/data/scenes`` gets what broadcasters put on screen: a lower third (a
name and a place, Latin script, accents), a headline in Chinese (traditional or simplified, in
WenQuanYi Zen Hei, Debian's ``fonts-wqy-zenhei``), and on some a ticker crawling along the bottom (30 px/s, on screen throughout).
Half are written as H.264 in MP4 and half as MPEG-2 in MPEG-TS (720x576, what a DVB capture
holds); the text stays on screen for the whole clip. :func:`make_set` returns, per file, the
strings burnt in, for recall: what the reader should find.

    python bench/burnin.py OUT_DIR          # writes the clips and truth.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT.parent / "shared" / "data" / "scenes"
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
SECONDS = 5.0


@dataclass(frozen=True)
class Burnt:
    clip: str  # source clip in the scenes folder
    out: str  # file written
    lower: tuple[str, str]  # lower third: name, place
    headline: str  # Chinese
    ticker: str = ""  # crawls right to left, or ""
    start: float = 0.0  # where in the clip the 5 s are taken
    strings: list[str] = field(default_factory=list)  # what should be read (set by make_set)


PLAN = [
    Burnt("issue-195-aspect-ratio.mp4", "doc-lower-third.ts", ("Angela Merkel", "Bundeskanzlerin, Berlin"),
          "臺灣總統大選今日開票", "Markets: DAX up 1.2 percent, oil falls", start=3.0),
    Burnt("testvideo.mp4", "news-paris.mp4", ("Jean-Luc Mélenchon", "Live: Paris"), "北京冬奥会开幕式今晚举行",
          start=2.0),
    Burnt("goldeneye-vfr-drop3.mp4", "film-report.ts", ("Pierce Brosnan", "Cannes Festival"), "香港天文台發出紅色暴雨警告",
          "Storm warning for the north coast tonight"),
    Burnt("bigbuckbunny.mp4", "cartoon-studio.mp4", ("Maria Gonzalez", "Studio 4, Madrid"), "台北捷運今晨恢復通車"),
    Burnt("bikes.mp4", "street-weather.ts", ("Weather Centre", "Manchester, 14°C"), "上海今天多云转晴",
          "Traffic: M60 closed at junction 12"),
]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'").replace("%", "\\%").replace(",", "\\,")


def _filters(b: Burnt) -> str:
    """Scale to 720x576 letterboxed, a lower-third band, the two lines, the headline, the ticker."""
    parts = ["scale=720:576:force_original_aspect_ratio=decrease,pad=720:576:(ow-iw)/2:(oh-ih)/2,setsar=1",
             "drawbox=x=0:y=390:w=iw:h=96:color=navy@0.75:t=fill",
             f"drawtext=fontfile={LATIN_FONT}:text='{_escape(b.lower[0])}':x=36:y=398:fontsize=32:fontcolor=white",
             f"drawtext=fontfile={LATIN_FONT}:text='{_escape(b.lower[1])}':x=36:y=442:fontsize=24:fontcolor=white",
             "drawbox=x=0:y=24:w=iw:h=52:color=black@0.55:t=fill",
             f"drawtext=fontfile={CJK_FONT}:text='{_escape(b.headline)}':x=36:y=32:fontsize=34:fontcolor=yellow"]
    if b.ticker:
        parts += ["drawbox=x=0:y=520:w=iw:h=40:color=darkred@0.9:t=fill",
                  f"drawtext=fontfile={LATIN_FONT}:text='{_escape(b.ticker)}':y=528:fontsize=22:fontcolor=white:"
                  "x=180-t*30"]
    return ",".join(parts)


def make_set(out_dir: Path, scenes_dir: Path = SCENES) -> list[Burnt]:
    """Write the clips into ``out_dir`` (each once: an existing file is kept); their truth."""
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg not found; install it (apt-get install -y ffmpeg)")
    if not Path(CJK_FONT).exists():
        raise SystemExit(f"{CJK_FONT}: no CJK font; install it (apt-get install -y fonts-wqy-zenhei)")
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for b in PLAN:
        src = scenes_dir / b.clip
        if not src.exists():
            raise SystemExit(f"{src}: missing; put ../shared beside the repository")
        out = out_dir / b.out
        codec = (["-c:v", "mpeg2video", "-q:v", "3", "-f", "mpegts"] if out.suffix == ".ts"
                 else ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"])
        if not out.exists():
            tmp = out.with_name(out.stem + ".part" + out.suffix)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(b.start), "-i", str(src), "-t", str(SECONDS),
                            "-vf", _filters(b), "-r", "25", "-an", *codec, str(tmp)], check=True)
            tmp.replace(out)
        words = b.ticker.split() if b.ticker else []
        made.append(Burnt(**{**asdict(b), "strings": [*b.lower, b.headline, *words]}))
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    made = make_set(args.out)
    (args.out / "truth.json").write_text(json.dumps([asdict(b) for b in made], ensure_ascii=False, indent=2))
    print(f"{len(made)} clips in {args.out}")


if __name__ == "__main__":
    main()
