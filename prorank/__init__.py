"""ProRank: small language models as document rerankers.

>>> from prorank import Reranker
>>> r = Reranker.from_pretrained("prorank-smollm2-135m")   # doctest: +SKIP
>>> r.rank("what is BM25?", ["BM25 is a ranking function.", "Bananas."], top_k=1)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prorank.options import RerankerOptions
from prorank.prompt import PROMPT_VERSION

__version__ = "0.1.0"
__all__ = ["Reranker", "RankResult", "RerankerOptions", "PROMPT_VERSION", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from prorank.reranker import RankResult, Reranker


def __getattr__(name: str):  # lazy: `import prorank` must not import torch
    if name in ("Reranker", "RankResult"):
        from prorank import reranker

        return getattr(reranker, name)
    raise AttributeError(f"module 'prorank' has no attribute {name!r}")
