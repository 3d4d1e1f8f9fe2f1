"""ProRank training: stage 1 GRPO prompt warmup and stage 2 fine-grained score learning.

Importing this package is cheap; TRL, datasets and pyserini are imported by the modules that
need them (``prorank.train.stage1_warmup``, ``prorank.train.stage2_score``), never here.
"""
