"""The public reranking API.

>>> r = Reranker.from_pretrained("prorank-smollm2-135m")          # doctest: +SKIP
>>> r.rank("capital of France", ["Paris is ...", "Bananas ..."])   # doctest: +SKIP
[RankResult(index=0, score=3.1, document=None), RankResult(index=1, score=-2.4, document=None)]
>>> r.score("capital of France", ["Paris is ..."], normalize="calibrated")  # doctest: +SKIP
[0.93]

Scores come on one of three scales (``normalize``, per reranker or per call): ``False`` (the
default) the raw ``logit("1") - logit("0")``, whose order is all that means something;
``"calibrated"`` the probability that the document is relevant (``prorank.calibration``: fitted
on dev queries, what a threshold such as 0.5 needs); ``"sigmoid"`` (also ``True``) the raw score's
sigmoid, in [0, 1] but not a probability. The ranking is the same on every scale: it is always
made from the raw scores. Documents with no letter or digit are not scored by the model
(``prorank.degenerate``).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from prorank.calibration import Calibration, check_normalize, missing_calibration, sigmoid
from prorank.config import check_positive
from prorank.degenerate import DEGENERATE_SCORE, is_degenerate, ranked
from prorank.fusion import Fusion, resolve
from prorank.loading import (
    default_batch_size,
    default_device,
    default_share_prefix,
    default_dtype,
    load_model,
    parse_dtype,
    prepare_tokenizer,
)
from prorank.options import RerankerOptions
from prorank.prompt import PROMPT_VERSION, Document, PromptBuilder, document_text
from prorank.scoring import (
    collate,
    common_prefix_length,
    prefix_cache,
    relevance_scores,
    relevance_scores_after_prefix,
)
from prorank.streams import default_streams, run_streams

DEFAULT_MAX_LENGTH = 512  # prompt tokens when neither the caller nor the checkpoint says

# a query's prompts share their first tokens (system turn, instruction, query): with
# share_prefix, those are run once per query when at least this many tokens are shared
MIN_SHARED_PREFIX = 8


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens of ``prompts`` to run once as their shared prefix: the common prefix less the last
    token (each prompt keeps its answer position), or 0 when that is under ``MIN_SHARED_PREFIX``
    or there is only one prompt."""
    if len(prompts) < 2:
        return 0
    shared = common_prefix_length(prompts) - 1
    return shared if shared >= MIN_SHARED_PREFIX else 0


def compile_decoder_layers(model: torch.nn.Module) -> None:
    """``torch.compile`` (dynamic shapes) each block of the decoder in place, or the whole decoder
    when it keeps its blocks elsewhere than ``layers``. Blocks share their code, so one compiled
    graph serves them all; weights and ``state_dict`` are untouched."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    for module in layers if isinstance(layers, torch.nn.ModuleList) else [decoder]:
        module.compile(dynamic=True)


@dataclass(frozen=True)
class RankResult:
    index: int  # position of the document in the input list
    score: float  # what the ranking used: the model's score, or the fused one
    document: str | None = None
    model_score: float | None = None  # the model's own score, when fused with first-stage scores


def _check_documents(documents: Any) -> list[Document]:
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Iterable):
        raise TypeError("documents must be a list of str or {'text': ...} mappings")
    docs = list(documents)
    for doc in docs:
        document_text(doc)  # raises TypeError naming 'documents'
    return docs


class Reranker:
    """Scores (query, document) pairs with ``logit("1") - logit("0")`` of a causal LM."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int | None = None,
        normalize: bool | str = False,
        long_documents: bool = False,
        share_prefix: bool | None = None,
        compile: bool = False,
        streams: int | None = None,
        fusion: Fusion | None = None,
        calibration: Calibration | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        weight_files: Sequence[os.PathLike] = (),
        show_progress: bool = False,
    ) -> None:
        check_positive("batch_size", batch_size, optional=True)
        check_positive("streams", streams, optional=True)
        check_normalize(normalize)
        device = next(model.parameters()).device
        if batch_size is None:
            batch_size = default_batch_size(device)
        if compile and share_prefix:
            raise ValueError("compile and share_prefix cannot be combined: the cached path would "
                             "recompile every layer; choose one")
        if share_prefix is None:  # the device's default, unless compiled (the two exclude each other)
            share_prefix = default_share_prefix(device) and not compile
        self.model = model.eval()
        if compile:
            compile_decoder_layers(self.model)
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.builder = PromptBuilder(self.tokenizer, max_length=max_length)
        self.max_length = max_length
        self.batch_size = batch_size
        self.normalize = normalize
        self.long_documents = long_documents
        self.share_prefix = share_prefix
        self.compiled = compile
        self.streams = streams
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.metadata = dict(metadata or {})
        self.fusion = fusion if fusion is not None else resolve(self.metadata)
        self.calibration = calibration if calibration is not None else Calibration.from_metadata(self.metadata)
        if normalize == "calibrated" and self.calibration is None:
            raise missing_calibration(self.name)
        self.show_progress = show_progress
        self._weight_files = [os.fspath(p) for p in weight_files]
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int | None = None,
        batch_size: int | None = None,
        normalize: bool | str = False,
        long_documents: bool = False,
        share_prefix: bool | None = None,
        compile: bool = False,
        streams: int | None = None,
        fusion: str | None = None,
        fusion_weight: float | None = None,
        calibration: str | os.PathLike | Calibration | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
    ) -> "Reranker":
        """Load from an alias, hub id, folder, ``.gguf`` file, LoRA adapter or ProRank checkpoint.

        ``batch_size=None`` picks the device's default (``prorank.loading.default_batch_size``).
        ``share_prefix`` runs the tokens a query's prompts share once per query (see
        ``score_pairs``); ``None`` = the device's default (``prorank.loading.default_share_prefix``:
        on for CPU, off for accelerators, off with ``compile``; the README's throughput section
        has the measurements).
        ``compile`` compiles each decoder layer with ``torch.compile`` (dynamic shapes): the first
        batches take longer (tens of seconds on a CPU), later ones run fused kernels; for
        long-running processes such as the server.
        ``streams`` batches are scored concurrently, each on a thread of its own with an equal
        share of the caller's torch threads (``prorank.streams``); ``None`` = one stream per torch
        thread on a CPU (batches of one prompt each by default), 1 on an accelerator.
        ``max_length=None`` takes the checkpoint's training length (``prorank.json``), else 512.
        ``fusion`` (``none``, ``interpolate``, ``rrf``) and ``fusion_weight`` (the first stage's
        share, in [0, 1]) apply when ``rank`` is given first-stage scores; ``None`` takes the
        checkpoint's dev-tuned fusion (none for a plain model).
        ``normalize``: the scale of the scores, ``False`` (raw, the default), ``"calibrated"`` or
        ``"sigmoid"`` (``True`` means ``"sigmoid"``); see the module's docstring.
        ``calibration``: the map ``"calibrated"`` uses; ``None`` takes the checkpoint's
        (``prorank.json``, written by ``prorank calibrate``), a path reads a file written by
        ``prorank calibrate --output`` (refused when it was fitted for another model fingerprint).
        """
        check_normalize(normalize)
        calibration_file = None
        if calibration is not None and not isinstance(calibration, Calibration):  # read before the model
            calibration_file, calibration = os.fspath(calibration), Calibration.load(calibration)
        dev = torch.device(device) if device is not None else default_device()
        torch_dtype = parse_dtype(dtype) or default_dtype(dev)
        loaded = load_model(
            name_or_path, dtype=torch_dtype, trust_remote_code=trust_remote_code, revision=revision
        )
        reranker = cls(
            loaded.model.to(dev),
            loaded.tokenizer,
            max_length=max_length or int(loaded.metadata.get("max_length") or DEFAULT_MAX_LENGTH),
            batch_size=batch_size,
            normalize=normalize,
            long_documents=long_documents,
            share_prefix=share_prefix,
            compile=compile,
            streams=streams,
            fusion=resolve(loaded.metadata, fusion, fusion_weight),
            calibration=calibration,
            name=loaded.source,
            metadata=loaded.metadata,
            weight_files=loaded.weight_files,
        )
        if calibration_file is not None:
            fitted_for = reranker.calibration.model.get("fingerprint")
            if fitted_for != reranker.fingerprint:
                raise ValueError(
                    f"calibration {calibration_file} was fitted for model fingerprint {fitted_for!r} "
                    f"({reranker.calibration.model.get('name')}, max_length "
                    f"{reranker.calibration.model.get('max_length')}), not for this one ({reranker.fingerprint}: "
                    f"{loaded.source}, max_length {reranker.max_length}); refit it with `prorank calibrate`")
        return reranker

    @classmethod
    def from_options(cls, name_or_path: str | os.PathLike, options: RerankerOptions | None = None,
                     **kwargs: Any) -> "Reranker":
        """``from_pretrained`` with the settings of a ``RerankerOptions`` (the block ``prorank eval``,
        ``rank`` and ``serve`` configs nest); ``kwargs`` add loading arguments (``revision``, ...)."""
        return cls.from_pretrained(name_or_path, **(options or RerankerOptions()).kwargs(), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def effective_streams(self) -> int:
        """Batches in flight at once when called from this thread: ``streams``, or the device's
        default (``prorank.streams.default_streams``: one per torch thread of the caller on CPU)."""
        return self.streams or default_streams(self.device)

    @property
    def fingerprint(self) -> str:
        """Stable id of (weights, prompt version): keys score caches and provenance records."""
        if self._fingerprint is None:
            digest = hashlib.sha256(PROMPT_VERSION.encode())
            digest.update(f"max_length={self.max_length};long={self.long_documents}".encode())
            if self._weight_files:
                from prorank.paths import sha256_file

                for path in self._weight_files:
                    digest.update(sha256_file(path).encode())
            else:
                for name, tensor in sorted(self.model.state_dict().items()):
                    digest.update(name.encode())
                    digest.update(tensor.detach().to("cpu", torch.float32).numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    # ----------------------------------------------------------------------------- scoring
    def score(
        self, query: str, documents: Sequence[Document], instruction: str | None = None,
        normalize: bool | str | None = None,
    ) -> list[float]:
        """Score each document against ``query``; scores follow the input order.

        ``normalize`` picks the scale for this call (``None``: the reranker's own, see
        ``from_pretrained``)."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        docs = _check_documents(documents)
        return self.score_pairs([(query, d) for d in docs], instruction=instruction, normalize=normalize)

    def score_pairs(
        self, pairs: Sequence[tuple[str, Document]], instruction: str | None = None,
        normalize: bool | str | None = None,
    ) -> list[float]:
        """Score ``(query, document)`` pairs on the scale ``normalize`` (``None``: the reranker's);
        batches are length-sorted, order is restored.

        With ``share_prefix``, the prompts of a query that has several documents are
        scored after running their common prefix (system turn, instruction, query) once; the
        scores equal those of the full prompts up to float rounding.
        """
        scale = self._scale(normalize)  # a bad or uncalibrated choice fails before any work
        return [self.output(s, scale) for s in self.raw_scores(pairs, instruction)]

    def raw_scores(self, pairs: Sequence[tuple[str, Document]], instruction: str | None = None) -> list[float]:
        """Raw ``logit("1") - logit("0")`` of each pair (``DEGENERATE_SCORE`` for a document
        with no letter or digit, which the model does not see)."""
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
            raise TypeError("pairs must be a list of (query, document) tuples")
        pairs = list(pairs)
        if not pairs:
            return []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"pairs[{i}] must be a (query, document) tuple")
            if not isinstance(pair[0], str):
                raise TypeError(f"pairs[{i}]: query must be a str")
            document_text(pair[1])  # raises TypeError naming 'documents' before any work
        owners: list[int] = []  # pair index of each prompt (several with long-document windows)
        items: list[tuple[str, Document]] = []
        best = [-math.inf] * len(pairs)
        for i, (query, doc) in enumerate(pairs):
            if is_degenerate(document_text(doc)):
                best[i] = DEGENERATE_SCORE
                continue
            windows = (
                self.builder.windows(query, doc, instruction) if self.long_documents else [doc]
            )
            items += [(query, window) for window in windows]
            owners += [i] * len(windows)
        by_query: dict[str, list[int]] = {}  # prompt indices of each query
        for k, (query, _) in enumerate(items):
            by_query.setdefault(query, []).append(k)
        prompts = [e.input_ids for e in self.builder.encode_many(items, instruction)] if items else []
        raw = self._score_by_query(prompts, list(by_query.values())) if prompts else []
        for owner, value in zip(owners, raw):
            best[owner] = max(best[owner], value)
        return best

    def _scale(self, normalize: bool | str | None) -> bool | str:
        """The scale a call asked for (``None``: the reranker's), checked: a calibrated one needs
        a calibration."""
        scale = self.normalize if normalize is None else check_normalize(normalize)
        if scale == "calibrated" and self.calibration is None:
            raise missing_calibration(self.name)
        return scale

    def output(self, raw: float, normalize: bool | str | None = None) -> float:
        """The score callers see for a raw ``logit("1") - logit("0")`` on the scale ``normalize``
        (``None``: the reranker's): the calibrated probability, the sigmoid, or the raw value. On
        the two probability scales a raw score at or below ``DEGENERATE_SCORE`` is exactly 0."""
        scale = self._scale(normalize)
        if scale is False:
            return raw
        if raw <= DEGENERATE_SCORE:
            return 0.0
        return self.calibration.probability(raw) if scale == "calibrated" else sigmoid(raw)

    def _score_by_query(self, prompts: list[list[int]], groups: list[list[int]]) -> list[float]:
        """Scores of ``prompts``; each group of two or more (one query's) shares its prefix."""
        raw = [0.0] * len(prompts)
        alone = [k for g in groups if not self.share_prefix or len(g) < 2 for k in g]
        shared = [g for g in groups if self.share_prefix and len(g) >= 2]
        if alone:
            for k, value in zip(alone, self.score_token_ids([prompts[k] for k in alone])):
                raw[k] = value
        for group in shared:
            for k, value in zip(group, self.score_token_ids([prompts[k] for k in group], share_prefix=True)):
                raw[k] = value
        return raw

    @torch.inference_mode()
    def score_token_ids(
        self,
        prompts: Sequence[Sequence[int]],
        share_prefix: bool = False,
        keep: Callable[[int], bool] | None = None,
    ) -> list[Any]:
        """Raw scores of already-encoded prompts, in input order.

        Prompts are sorted by length into batches of ``batch_size``, scored ``streams`` batches
        at a time. With ``share_prefix`` and a common prefix of at least ``MIN_SHARED_PREFIX``
        tokens (all prompts of one query), the prefix is run once and its key/value cache reused
        by every batch; each prompt keeps at least its last token. ``keep(i)`` is asked for each
        prompt when its batch comes up: prompt ``i`` is skipped (score ``None``) when it says
        False (the server drops the prompts of cancelled requests this way).
        """
        shared = shared_prefix_length(prompts) if share_prefix else 0
        prefix = prefix_cache(self.model, prompts[0][:shared]) if shared else None
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        pad_id = self.tokenizer.pad_token_id
        answer_ids = self.builder.answer_token_ids

        @torch.inference_mode()  # per thread: the streams run on threads of their own
        def score_batch(idx: list[int]) -> list[float]:
            if keep is not None:  # in place: the scores below are matched to ``idx`` after the run
                idx[:] = [i for i in idx if keep(i)]
                if not idx:
                    return []
            ids, mask = collate([prompts[i][shared:] for i in idx], pad_id, self.device)
            if prefix is None:
                return relevance_scores(self.model, ids, mask, answer_ids).tolist()
            return relevance_scores_after_prefix(self.model, prefix, ids, mask, answer_ids).tolist()

        bar = None
        if self.show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), desc="scoring", unit="batch")
        try:
            values = run_streams(score_batch, batches, self.effective_streams,
                                 on_done=bar.update if bar else None)
        finally:
            if bar is not None:
                bar.close()
        scores: list[Any] = [None if keep is not None else 0.0] * len(prompts)
        for idx, batch_values in zip(batches, values):
            for i, value in zip(idx, batch_values):
                scores[i] = value
        return scores

    # ----------------------------------------------------------------------------- ranking
    def rank(
        self,
        query: str,
        documents: Sequence[Document],
        top_k: int | None = None,
        return_documents: bool = False,
        instruction: str | None = None,
        first_stage_scores: Sequence[float] | None = None,
        normalize: bool | str | None = None,
    ) -> list[RankResult]:
        """Documents sorted by score (best first); ``index`` is the position in ``documents``;
        ``score`` is on the scale ``normalize`` (``None``: the reranker's).

        The order is that of the raw scores on every scale (a probability that rounds to 1.0 ties
        nothing), with documents that have no letter or digit last (``prorank.degenerate``).
        With ``first_stage_scores`` (e.g. BM25's, one per document) and an active ``fusion``, the
        ranking uses the fused score (of the raw model scores, as the fusion was tuned);
        ``model_score`` keeps the model's own, on the scale ``normalize``.
        """
        check_positive("top_k", top_k, optional=True)
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        docs = _check_documents(documents)
        if first_stage_scores is not None:
            first_stage_scores = [float(x) for x in first_stage_scores]
            if len(first_stage_scores) != len(docs):
                raise ValueError(f"first_stage_scores: {len(first_stage_scores)} values for {len(docs)} documents")
        scale = self._scale(normalize)
        raw = self.raw_scores([(query, d) for d in docs], instruction=instruction)
        model_scores = [self.output(s, scale) for s in raw]
        fused = first_stage_scores is not None and self.fusion.active
        scores, order = ranked(raw, model_scores, [is_degenerate(document_text(d)) for d in docs], self.fusion,
                               first_stage_scores)
        order = order[:top_k] if top_k is not None else order
        return [
            RankResult(i, scores[i], document_text(docs[i]) if return_documents else None,
                       model_scores[i] if fused else None)
            for i in order
        ]

    def __repr__(self) -> str:
        return (
            f"Reranker(name={self.name!r}, device={self.device}, max_length={self.max_length}, "
            f"batch_size={self.batch_size}, streams={self.streams}, share_prefix={self.share_prefix}, "
            f"compiled={self.compiled}, fusion={self.fusion}, normalize={self.normalize!r}, "
            f"calibrated={self.calibration is not None}, prompt={PROMPT_VERSION!r})"
        )
