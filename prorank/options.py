"""``RerankerOptions``: how a reranker runs, the one place each of its settings is defined.

``prorank eval`` (``EvalConfig.reranker``), ``prorank serve`` (``ServeConfig.reranker``) and
``prorank rank`` take these settings as one nested block (YAML ``reranker: {max_length: 256}``,
overrides ``reranker.max_length=256``, flags ``--max-length 256``: one flag per field, generated
from this class by ``add_option_flags``) and load the model with ``Reranker.from_options``.

>>> RerankerOptions(max_length=256, normalize="calibrated").normalize
'calibrated'
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from prorank.config import add_config_flags, check_positive, flag_values, option

__all__ = ["RerankerOptions", "add_option_flags", "options_from_flags"]


@dataclass
class RerankerOptions:
    """Device, precision, batching and scoring settings of a ``Reranker`` (not which model)."""

    device: str | None = option(None, "cpu, cuda, cuda:1, mps (default: cuda when visible, else cpu)")
    dtype: str | None = option(None, "float32, bfloat16, float16 (default: bf16 on CUDA, float32 elsewhere)")
    max_length: int | None = option(None, "prompt tokens; longer documents are truncated by tokens "
                                    "(default: the checkpoint's training length, else 512)")
    batch_size: int | None = option(None, "pairs per forward pass (default: the device's, 1 on CPU, 32 on CUDA)")
    streams: int | None = option(None, "forward passes in flight at once, a thread each "
                                 "(default: one per torch thread on CPU, 1 on GPU)")
    share_prefix: bool | None = option(None, "run the tokens a query's prompts share once per query "
                                       "(default: on for CPU, off on accelerators and with compile)")
    compile: bool = option(False, "torch.compile the decoder layers (slower start, faster batches)")
    normalize: bool | str = option(False, "the scores' scale: calibrated (P(relevant), fitted by `prorank "
                                   "calibrate`), sigmoid (true means the same: sigmoid of the raw score, in "
                                   "[0, 1] but no probability) or false (the raw logit('1') - logit('0')); "
                                   "the ranking is the same on every scale (default: false; the service's "
                                   "default is calibrated)")
    long_documents: bool = option(False, "score documents longer than max_length by windows, keep the best")
    fusion: str | None = option(None, "with first-stage scores: none, interpolate or rrf (default: the "
                                "checkpoint's dev-tuned fusion; none for a plain model)")
    fusion_weight: float | None = option(None, "the first stage's share of the fusion in [0, 1] "
                                         "(default: the checkpoint's)")
    calibration: str | None = option(None, "a calibration file written by `prorank calibrate --output` "
                                     "(default: the checkpoint's, in its prorank.json)")

    def __post_init__(self) -> None:
        for name in ("max_length", "batch_size", "streams"):
            check_positive(name, getattr(self, name), optional=True)
        from prorank.calibration import check_normalize

        check_normalize(self.normalize)
        if self.compile and self.share_prefix:
            raise ValueError("compile and share_prefix cannot be combined; choose one")
        from prorank.fusion import Fusion

        Fusion(self.fusion or "none", 0.0 if self.fusion_weight is None else self.fusion_weight)  # validates

    def kwargs(self) -> dict[str, Any]:
        """The settings as ``Reranker.from_pretrained`` keyword arguments."""
        return dataclasses.asdict(self)


def add_option_flags(parser: argparse.ArgumentParser | Any, dest_prefix: str = "reranker.",
                     skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per ``RerankerOptions`` field (``--max-length``, ``--normalize``, ...) but
    ``skip``, in a group of their own (``prorank.config.add_config_flags``)."""
    group = parser.add_argument_group("reranker options (RerankerOptions; YAML block `reranker:`)")
    add_config_flags(group, RerankerOptions, dest_prefix, skip=skip)


def options_from_flags(args: argparse.Namespace, dest_prefix: str = "reranker.") -> dict[str, Any]:
    """The ``RerankerOptions`` fields given on the command line, YAML-typed: ``{"max_length": 256}``."""
    return flag_values(args, dest_prefix)
