"""ProRank training: stage 1 GRPO prompt warmup and stage 2 fine-grained score learning.

Importing this package is cheap; TRL, datasets and pyserini are imported by the modules that
need them (``prorank.train.stage1_warmup``, ``prorank.train.stage2_score``), never here.
"""

import os


def is_main_process() -> bool:
    """Whether this is the main process: global rank 0 under ``accelerate launch`` (torchrun sets
    ``RANK``), or the only process of a plain run. Read from the environment, so that asking does
    not set up accelerate's process state before a stage chooses its device."""
    return os.environ.get("RANK", "0") == "0"
