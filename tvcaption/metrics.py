"""Caption metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L and CIDEr.

Keys are pycocoevalcap's own names (:data:`METRIC_KEYS`), so numbers compare with the papers'
tables. Captions and references are PTB-tokenised (lower-cased, punctuation dropped) exactly as
in the COCO caption evaluation, by the Stanford tokenizer jar that ships in pycocoevalcap.

Two things differ from calling pycocoevalcap's ``PTBTokenizer`` directly, both workarounds:
its ``tokenize`` writes a temporary file into the installed package folder (fails on a
read-only install) and lets Java print a progress line on stderr; here the file goes to the
system temp folder and the line is swallowed.

CIDEr takes its document frequencies from the references of the clips being scored (as
pycocoevalcap does), so a CIDEr on 50 validation clips is not on the same scale as one on the
full test split; compare CIDEr only across the same clip set. Per-clip scores are returned for
paired comparisons (``bench/ablation.py`` bootstraps them).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tvcaption.errors import TvcaptionError

METRIC_KEYS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
# Same list as pycocoevalcap's tokenizer: tokens dropped after PTB tokenisation.
_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                           ".", "?", "!", ",", ":", "-", "--", "...", ";"])


@dataclass(frozen=True)
class CaptionScores:
    corpus: dict[str, float]  # key -> corpus-level score (what papers report)
    per_clip: dict[str, dict[str, float]]  # clip id -> key -> sentence-level score

    def clip_values(self, key: str, ids: Sequence[str] | None = None) -> list[float]:
        """Per-clip scores for one key, in the order of ``ids`` (default: insertion order)."""
        return [self.per_clip[i][key] for i in (ids if ids is not None else self.per_clip)]


def java_available() -> bool:
    return shutil.which("java") is not None


def _require_java() -> None:
    if not java_available():
        raise TvcaptionError("java: not found on PATH; install a Java runtime (8 or later): "
                             "pycocoevalcap's PTB tokenizer and METEOR run on it")


def _tokenizer_jar() -> Path:
    # pycocoevalcap is a namespace package (no __init__.py): locate the jar from a module file.
    from pycocoevalcap.tokenizer import ptbtokenizer

    return Path(ptbtokenizer.__file__).resolve().parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR


def ptb_tokenize(texts: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """PTB-tokenise captions per clip: {id: [caption, ...]} -> {id: [tokenised, ...]}."""
    _require_java()
    ids = [k for k, caps in texts.items() for _ in caps]
    lines = [c.replace("\n", " ").replace("\r", " ") for caps in texts.values() for c in caps]
    jar = _tokenizer_jar()
    with tempfile.TemporaryDirectory(prefix="tvcaption-ptb-") as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_text("\n".join(lines), encoding="utf-8")
        proc = subprocess.run(
            ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
             "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(src)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise TvcaptionError(f"{jar}: PTB tokenizer failed ({proc.stderr.decode(errors='replace').strip()[:200]}); "
                             "check the Java runtime")
    out_lines = proc.stdout.decode("utf-8").split("\n")
    out: dict[str, list[str]] = {k: [] for k in texts}
    for k, line in zip(ids, out_lines + [""] * (len(ids) - len(out_lines))):
        out[k].append(" ".join(w for w in line.rstrip().split(" ") if w and w not in _PUNCTUATIONS))
    return out


class _MeteorServer:
    """One METEOR JVM per process, started on first use: its start costs seconds (paraphrase
    tables), and validation runs every epoch."""

    _lock = threading.Lock()
    _meteor = None

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._meteor is None or cls._meteor.meteor_p.poll() is not None:
                from pycocoevalcap.meteor.meteor import Meteor

                cls._meteor = Meteor()
            return cls._meteor


def score_captions(hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]],
                   *, meteor: bool = True) -> CaptionScores:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of one hypothesis per clip against its references.

    ``hypotheses``: clip id -> generated caption; ``references``: clip id -> human captions (at
    least one each). Every hypothesis id needs references; extra reference ids are ignored.
    ``meteor=False`` skips METEOR (its key is then absent).
    """
    if not hypotheses:
        raise ValueError("score_captions: no hypotheses to score")
    missing = [k for k in hypotheses if not references.get(k)]
    if missing:
        raise ValueError(f"score_captions: no references for clip(s) {', '.join(map(str, missing[:5]))}")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = list(hypotheses)
    tokens = ptb_tokenize({**{f"h{i}": [hypotheses[k]] for i, k in enumerate(ids)},
                           **{f"r{i}": list(references[k]) for i, k in enumerate(ids)}})
    res = {k: tokens[f"h{i}"] for i, k in enumerate(ids)}
    gts = {k: tokens[f"r{i}"] for i, k in enumerate(ids)}

    corpus: dict[str, float] = {}
    per_clip: dict[str, dict[str, float]] = {k: {} for k in ids}
    bleu, bleu_clips = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"Bleu_{n + 1}"] = float(bleu[n])
        for k, v in zip(ids, bleu_clips[n]):
            per_clip[k][f"Bleu_{n + 1}"] = float(v)
    scorers = []
    if meteor:
        _require_java()
        scorers.append(("METEOR", _MeteorServer.get()))
    scorers += [("ROUGE_L", Rouge()), ("CIDEr", Cider())]
    for key, scorer in scorers:
        score, clips = scorer.compute_score(gts, res)
        corpus[key] = float(score)
        for k, v in zip(ids, clips):
            per_clip[k][key] = float(v)
    order = [k for k in METRIC_KEYS if k in corpus]
    return CaptionScores(corpus={k: corpus[k] for k in order},
                         per_clip={c: {k: per_clip[c][k] for k in order} for c in ids})


def metric_in_range(key: str, value: float) -> bool:
    """Bounds of each score: CIDEr (x10 as pycocoevalcap reports it) lies in [0, 10], others in [0, 1]."""
    hi = 10.0 + 1e-6 if key == "CIDEr" else 1.0 + 1e-6
    return -1e-9 <= value <= hi


__all__ = ["METRIC_KEYS", "CaptionScores", "score_captions", "ptb_tokenize", "java_available",
           "metric_in_range"]

