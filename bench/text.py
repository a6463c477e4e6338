"""On-screen text: how much the text analyser reads, what it costs, in one run.

    python bench/text.py                     # burnt-in set + the 10-minute benchmark broadcast
    python bench/text.py --minutes 1         # a quick look

* Recall on the burnt-in set (bench/burnin.py: real clips with lower thirds, Chinese headlines
  and tickers burnt in, MP4 and MPEG-2 TS): the share of burnt-in strings read in full
  (letters and digits, case folded, accents aside, Chinese compared in simplified form), the
  share of their characters read (each string against its best-matching reading) and, for
  Latin script, the share of their words read as separate words (search needs the spaces);
  per script.
* OCR cost: seconds per frame read and per scene, characters read per second, frames read
  against frames offered (the unchanged-frame skip), on the burnt-in set through the analyser.
* ``tvcaption index`` of the benchmark broadcast (bench/broadcast.py, 720x576 MPEG-2 TS) with
  caption and tags and with ``text`` added, alternating (``--runs``, the fastest of each
  counts), fresh SQLite databases: wall time, ratio, scenes, texts stored.

Every figure comes from this run on this machine; compare the ratios. Results go to
bench/results/text.json; ``--table`` prints the README table from it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from broadcast import make_broadcast  # noqa: E402
from burnin import make_set  # noqa: E402
from index_run import index_run  # noqa: E402
from machine import cpu_model, proc_field  # noqa: E402

RESULTS = HERE / "results" / "text.json"


def _machine() -> dict:
    flags = f" {proc_field('/proc/cpuinfo', 'flags') or ''} "
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "avx512": " avx512f " in flags, "avx2": " avx2 " in flags}


def _script(text: str) -> str:
    from tvcaption.search_terms import has_cjk

    return "chinese" if has_cjk(text) else "latin"


def recall(clips: list, frames_per_scene: int) -> dict:
    """Run the analyser on each burnt-in clip as one scene; recall and cost."""
    from tvcaption.analysers import AnalyserContext, analyser_class
    from tvcaption.analysers.text import _key, merge
    from tvcaption.config import load_config
    from tvcaption.video import probe, read_frames, sample_times

    analyser = analyser_class("text")(AnalyserContext(load_config(None)))
    t = time.perf_counter()
    analyser.ocr  # noqa: B018 - load the models outside the timings
    load_s = time.perf_counter() - t
    per_script: dict[str, dict[str, float]] = {}
    frames_read = frames_offered = chars_read = 0
    ocr_s = 0.0
    rows = []
    read_frame = analyser.read_frame

    def counted(frame, when):
        nonlocal frames_read
        frames_read += 1
        return read_frame(frame, when)

    analyser.read_frame = counted
    for path, truth in clips:
        info = probe(path)
        sampled = sample_times(0.0, info.duration, 10)
        pick = sorted({int(round(i)) for i in [(k + 1) * 10 / (frames_per_scene + 1) for k in range(frames_per_scene)]})
        frames, times = read_frames(info, sampled[pick])
        frames_offered += len(frames)
        t = time.perf_counter()
        readings = merge(analyser.read_scene(frames, times, info.duration))
        ocr_s += time.perf_counter() - t
        chars_read += sum(len(r.text) for r in readings)
        keys = [_key(r.text) for r in readings]
        joined = " ".join(keys)
        words_read = {_key(w) for r in readings for w in r.text.split()}
        for s in truth.strings:
            want = _key(s)
            # characters read: the matching blocks of the string against its best-matching reading
            best = max((sum(b.size for b in difflib.SequenceMatcher(None, want, k, autojunk=False).get_matching_blocks())
                        for k in keys), default=0)
            tally = per_script.setdefault(_script(s), {"strings": 0, "strings_read": 0, "chars": 0, "chars_read": 0,
                                                       "words": 0, "words_read": 0})
            tally["strings"] += 1
            if _script(s) == "latin":  # a word read as a word (not run into the next): what search needs
                words = [k for k in (_key(w) for w in s.split()) if k]
                tally["words"] += len(words)
                tally["words_read"] += sum(k in words_read for k in words)
            tally["strings_read"] += want in joined
            tally["chars"] += len(want)
            tally["chars_read"] += best
        rows.append({"clip": path.name, "read": [r.text for r in readings]})
    scripts = {name: {"string_recall": t["strings_read"] / t["strings"], "char_recall": t["chars_read"] / t["chars"],
                      "word_recall": t["words_read"] / t["words"] if t["words"] else None, "strings": t["strings"]}
               for name, t in per_script.items()}
    return {"clips": len(clips), "frames_offered": frames_offered, "frames_read": frames_read, "ocr_s": ocr_s,
            "load_s": load_s, "s_per_frame": ocr_s / max(frames_read, 1), "s_per_scene": ocr_s / len(clips),
            "chars_per_s": chars_read / ocr_s if ocr_s else 0.0, "by_script": scripts, "readings": rows}


def index(recording: Path, work: Path, analysers: str) -> dict:
    run = index_run(recording, work, analysers)
    return {"analysers": analysers, "wall_s": run["wall_s"], "scenes": run["scenes"], "texts": run["kinds"].get("text", 0)}


def table(result: dict) -> str:
    r, ix = result["recall"], result["index"]
    lines = ["| what | figure |", "|---|---|"]
    for name, s in sorted(r["by_script"].items()):
        words = f", {s['word_recall']:.0%} of words as words" if s.get("word_recall") is not None else ""
        lines.append(f"| recall, {name} ({s['strings']} burnt-in strings) | {s['string_recall']:.0%} of strings, "
                     f"{s['char_recall']:.0%} of characters{words} |")
    lines += [f"| OCR per frame read | {r['s_per_frame']:.2f} s ({r['chars_per_s']:.0f} characters/s) |",
              f"| OCR per scene | {r['s_per_scene']:.2f} s ({r['frames_read']} of {r['frames_offered']} frames read) |",
              f"| index, {result['minutes']:g}-min broadcast, {ix['without']['analysers']} | "
              f"{ix['without']['wall_s']:.0f} s, {ix['without']['scenes']} scenes |",
              f"| index, same, + text | {ix['with']['wall_s']:.0f} s ({ix['ratio']:.2f}x), {ix['with']['texts']} texts |"]
    if "runs" in ix:
        lines.append(f"| index runs (s), without / with text | {ix['runs']['without']} / {ix['runs']['with']} |")
    m = result["machine"]
    lines.append(f"\n{m['cpu']}, {m['cores']} cores, AVX-512 {'yes' if m['avx512'] else 'no'}; one run of "
                 "`python bench/text.py`.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the broadcast indexed (default 10)")
    ap.add_argument("--frames", type=int, default=3, help="frames offered per scene ([text] frames, default 3)")
    ap.add_argument("--runs", type=int, default=2, help="index runs with and without text, alternating; the fastest of each counts")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--table", action="store_true", help="print the README table from --out and stop")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    with tempfile.TemporaryDirectory(prefix="tvcaption-text-") as tmp:
        work = Path(tmp)
        clips = [(work / "burnt" / b.out, b) for b in make_set(work / "burnt")]
        result: dict = {"machine": _machine(), "minutes": args.minutes, "recall": recall(clips, args.frames)}
        rec = work / f"broadcast-{args.minutes:g}min.ts"
        make_broadcast(rec, args.minutes)
        runs: dict[str, list[dict]] = {"without": [], "with": []}
        for _ in range(args.runs):  # alternating, so a busy spell of the machine hits both
            runs["without"].append(index(rec, work, "caption,tags"))
            runs["with"].append(index(rec, work, "caption,tags,text"))
        without, with_text = (min(runs[k], key=lambda r: r["wall_s"]) for k in ("without", "with"))
        result["index"] = {"without": without, "with": with_text, "ratio": with_text["wall_s"] / without["wall_s"],
                           "runs": {k: [round(r["wall_s"], 1) for r in v] for k, v in runs.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(table(result))


if __name__ == "__main__":
    main()
