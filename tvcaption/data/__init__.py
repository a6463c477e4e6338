"""Datasets: readers for MSR-VTT, MSVD and SynthTV, and the SynthTV generator.

Importing this package is light (standard library + numpy); rendering, video writing and
scikit-image load only when :func:`generate_synthtv` runs.
"""

from tvcaption.data.readers import Clip, detect_format, read_dataset, read_msrvtt, read_msvd, read_tvcaption
from tvcaption.data.synth import generate_synthtv, heldout_pairs, is_hard
from tvcaption.data.synth_grammar import parse_caption, slot_accuracy

__all__ = [
    "Clip",
    "detect_format",
    "read_dataset",
    "read_msrvtt",
    "read_msvd",
    "read_tvcaption",
    "generate_synthtv",
    "heldout_pairs",
    "is_hard",
    "parse_caption",
    "slot_accuracy",
]
