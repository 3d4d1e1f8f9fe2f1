"""Reranker on a tiny random Qwen2 model with the real tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from prorank import RankResult, Reranker
from prorank.checkpoint import read_metadata, save_checkpoint
from prorank.prompt import PromptBuilder
from prorank.scoring import collate, relevance_scores

QUERY = "how do vaccines train the immune system"
DOCS = [
    "Vaccines expose the immune system to antigens so that it forms memory cells.",
    "The stock market rallied on Tuesday.",
    {"title": "Immunology", "text": "Adaptive immunity relies on B and T lymphocytes."},
    "short",
    "A long text about many unrelated things. " * 30,
]


def test_batched_scores_equal_one_at_a_time(tiny_reranker):
    batched = tiny_reranker.score(QUERY, DOCS)
    single = [tiny_reranker.score(QUERY, [d])[0] for d in DOCS]
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(round(s, 6) for s in batched)) == len(DOCS)  # the model discriminates


def test_keep_skips_prompts_when_their_batch_comes_up(tiny_reranker):
    """The server's cancellation path: prompts ``keep`` refuses are not scored (None), the others
    score as without ``keep``; ``keep`` is asked again for each prompt as its batch starts."""
    prompts = [e.input_ids for e in tiny_reranker.builder.encode_many([(QUERY, d) for d in DOCS])]
    full = tiny_reranker.score_token_ids(prompts)
    asked: list[int] = []

    def keep(i: int) -> bool:
        asked.append(i)
        return i % 2 == 0

    kept = tiny_reranker.score_token_ids(prompts, keep=keep)
    assert sorted(asked) == list(range(len(prompts)))
    assert [v is None for v in kept] == [i % 2 == 1 for i in range(len(prompts))]
    assert [v for v in kept if v is not None] == pytest.approx(full[::2], abs=1e-5)
    assert tiny_reranker.score_token_ids(prompts, keep=lambda i: False) == [None] * len(prompts)


def test_input_order_is_restored(tiny_reranker):
    scores = tiny_reranker.score(QUERY, DOCS)
    reversed_scores = tiny_reranker.score(QUERY, DOCS[::-1])
    assert reversed_scores[::-1] == pytest.approx(scores, abs=1e-4)


def test_score_matches_full_logits(tiny_reranker):
    """Two-row scoring equals logit('1') - logit('0') from the full forward pass."""
    enc = tiny_reranker.builder.encode(QUERY, DOCS[0])
    ids = torch.tensor([enc.input_ids])
    with torch.inference_mode():
        logits = tiny_reranker.model(input_ids=ids).logits[0, -1].float()
    neg, pos = tiny_reranker.builder.answer_token_ids
    expected = (logits[pos] - logits[neg]).item()
    assert tiny_reranker.score(QUERY, [DOCS[0]])[0] == pytest.approx(expected, abs=1e-4)


def test_left_padding_does_not_change_scores(tiny_reranker):
    builder = tiny_reranker.builder
    seqs = [builder.encode(QUERY, d).input_ids for d in DOCS[:2]]
    ids, mask = collate(seqs, tiny_reranker.tokenizer.pad_token_id)
    assert mask[1, 0] == 0 or mask[0, 0] == 0  # one row is padded
    with torch.inference_mode():
        together = relevance_scores(tiny_reranker.model, ids, mask, builder.answer_token_ids)
        alone = [
            relevance_scores(tiny_reranker.model, *collate([s], 0), builder.answer_token_ids).item()
            for s in seqs
        ]
    assert together.dtype == torch.float32
    assert together.tolist() == pytest.approx(alone, abs=1e-4)


def test_right_padded_input_is_rejected(tiny_reranker):
    ids = torch.tensor([[5, 6, 0]])
    mask = torch.tensor([[1, 1, 0]])
    with pytest.raises(ValueError, match="left-padded"):
        relevance_scores(tiny_reranker.model, ids, mask, tiny_reranker.builder.answer_token_ids)


def test_rank_sorts_and_keeps_indices(tiny_reranker):
    scores = tiny_reranker.score(QUERY, DOCS)
    ranked = tiny_reranker.rank(QUERY, DOCS)
    assert [r.index for r in ranked] == sorted(range(len(DOCS)), key=lambda i: -scores[i])
    assert [r.score for r in ranked] == sorted(scores, reverse=True)
    assert all(isinstance(r, RankResult) and r.document is None for r in ranked)
    top = tiny_reranker.rank(QUERY, DOCS, top_k=2, return_documents=True)
    assert [r.index for r in top] == [r.index for r in ranked[:2]]
    for r in top:
        doc = DOCS[r.index]
        assert r.document == (doc if isinstance(doc, str) else "Immunology\n" + doc["text"])
    assert len(tiny_reranker.rank(QUERY, DOCS, top_k=100)) == len(DOCS)


def test_empty_documents_give_empty_results(tiny_reranker):
    assert tiny_reranker.rank(QUERY, []) == []
    assert tiny_reranker.score(QUERY, []) == []
    assert tiny_reranker.score_pairs([]) == []


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_bad_top_k(tiny_reranker, top_k):
    with pytest.raises(ValueError, match="top_k"):
        tiny_reranker.rank(QUERY, DOCS, top_k=top_k)


@pytest.mark.parametrize(
    "query, docs, match",
    [
        (None, ["a"], "query"),
        (3, ["a"], "query"),
        ("q", "a single string", "documents"),
        ("q", [1, 2], "documents"),
        ("q", [{"title": "t"}], "documents"),
        ("q", None, "documents"),
    ],
)
def test_bad_types(tiny_reranker, query, docs, match):
    with pytest.raises(TypeError, match=match):
        tiny_reranker.rank(query, docs)


def test_score_pairs_and_normalize(tiny_model_dir, tiny_reranker):
    pairs = [(QUERY, DOCS[0]), ("another query", DOCS[1])]
    raw = tiny_reranker.score_pairs(pairs)
    assert raw[0] == pytest.approx(tiny_reranker.score(QUERY, [DOCS[0]])[0], abs=1e-5)
    norm = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, normalize=True)
    probs = norm.score_pairs(pairs)
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert probs == pytest.approx([1 / (1 + pytest.importorskip("math").exp(-s)) for s in raw], abs=1e-6)
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        tiny_reranker.score_pairs([("only one",)])


def test_long_document_mode_takes_best_window(tiny_model_dir):
    long_doc = " ".join(["filler text about nothing"] * 60 + ["vaccines train immune memory"] * 3)
    r = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, long_documents=True)
    windows = r.builder.windows(QUERY, long_doc)
    assert len(windows) > 1
    per_window = [r.score_token_ids([r.builder.encode(QUERY, w).input_ids])[0] for w in windows]
    assert r.score(QUERY, [long_doc])[0] == pytest.approx(max(per_window), abs=1e-4)


def test_checkpoint_roundtrip_and_prompt_version_check(tmp_path, tiny_reranker):
    out = save_checkpoint(tiny_reranker.model, tiny_reranker.tokenizer, tmp_path / "ckpt",
                          {"stage": "score", "base_model": "tiny"})
    meta = read_metadata(out)
    assert meta["stage"] == "score" and meta["prompt_version"] == "prorank-prompt-v1"
    loaded = Reranker.from_pretrained(out, device="cpu", max_length=128)
    assert loaded.metadata["stage"] == "score"
    assert loaded.score(QUERY, DOCS) == pytest.approx(tiny_reranker.score(QUERY, DOCS), abs=1e-5)
    meta["prompt_version"] = "some-other-prompt"
    (out / "prorank.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="prompt version"):
        Reranker.from_pretrained(out, device="cpu")


def test_lora_adapter_folder_is_merged(tmp_path, tiny_model_dir, tiny_reranker):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    adapter_cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model_dir)
    loaded = Reranker.from_pretrained(tmp_path / "adapter", device="cpu", max_length=128)
    expected = Reranker(peft_model.merge_and_unload(), tiny_reranker.tokenizer, max_length=128)
    assert loaded.score(QUERY, DOCS) == pytest.approx(expected.score(QUERY, DOCS), abs=1e-4)
    assert loaded.score(QUERY, DOCS) != pytest.approx(tiny_reranker.score(QUERY, DOCS), abs=1e-3)
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())


def test_missing_path_and_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Reranker.from_pretrained(str(tmp_path / "nope"))
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="gguf"):
        Reranker.from_pretrained(bad)


def test_fingerprint_tracks_weights(tiny_model_dir, tiny_reranker, real_tokenizer):
    from conftest import build_tiny_model

    again = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=4)
    assert again.fingerprint == tiny_reranker.fingerprint
    same = Reranker(build_tiny_model(real_tokenizer, seed=0), real_tokenizer, max_length=128)
    other = Reranker(build_tiny_model(real_tokenizer, seed=1), real_tokenizer, max_length=128)
    assert same.fingerprint != other.fingerprint
    assert same.fingerprint == Reranker(build_tiny_model(real_tokenizer, seed=0), real_tokenizer,
                                        max_length=128).fingerprint


def test_prompt_builder_is_the_one_used(tiny_reranker):
    assert isinstance(tiny_reranker.builder, PromptBuilder)
    assert tiny_reranker.builder.max_length == 128


QUERY2 = "what do stock prices depend on"


def _embedded_tokens(reranker, fn):
    """Run ``fn`` and count the token positions that went through the input embedding."""
    seen = []
    hook = reranker.model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: seen.append(args[0].numel()))
    try:
        result = fn()
    finally:
        hook.remove()
    return result, sum(seen)


def test_shared_prefix_scores_equal_full_prompts(tiny_model_dir):
    """Each query's prefix runs once; scores equal scoring every full prompt (two queries mixed,
    batches of 2 so rows are padded and a query spans several batches)."""
    pairs = [(QUERY, d) for d in DOCS] + [(QUERY2, d) for d in DOCS[:3]] + [("lonely query", DOCS[0])]
    pairs = pairs[::2] + pairs[1::2]  # interleave the queries
    shared = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=2,
                                      share_prefix=True)
    plain = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=2,
                                     share_prefix=False)
    with_prefix, tokens_shared = _embedded_tokens(shared, lambda: shared.score_pairs(pairs))
    without, tokens_plain = _embedded_tokens(plain, lambda: plain.score_pairs(pairs))
    assert with_prefix == pytest.approx(without, abs=1e-4)
    assert len(set(round(s, 5) for s in with_prefix)) > 5
    # the shared part (system turn + query, > 8 tokens) ran once per query, not once per document
    assert tokens_shared < tokens_plain - 8 * (len(pairs) - 3)


def test_bad_document_fails_before_any_scoring(tiny_model_dir):
    r = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=2)
    calls = []
    hook = r.model.get_input_embeddings().register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(TypeError, match="documents"):
            r.score_pairs([(QUERY, d) for d in DOCS] + [(QUERY, 42)])
    finally:
        hook.remove()
    assert calls == []


def test_compiled_reranker_scores_equal_eager(tiny_model_dir):
    """compile=True runs torch.compile'd decoder layers (graphs really built) with the same scores."""
    from torch._dynamo.utils import counters

    pairs = [(QUERY, d) for d in DOCS] + [(QUERY2, d) for d in DOCS[:3]]
    eager = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=3)
    compiled = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=3,
                                        compile=True)
    graphs = counters["stats"]["unique_graphs"]
    assert compiled.score_pairs(pairs) == pytest.approx(eager.score_pairs(pairs), abs=1e-4)
    assert counters["stats"]["unique_graphs"] > graphs
    assert "compiled=True" in repr(compiled)
    with pytest.raises(ValueError, match="share_prefix"):
        Reranker.from_pretrained(tiny_model_dir, device="cpu", compile=True, share_prefix=True)


def test_prefix_scoring_rejects_right_padding(tiny_reranker):
    from prorank.scoring import prefix_cache, relevance_scores_after_prefix

    builder = tiny_reranker.builder
    prompt = builder.encode(QUERY, DOCS[0]).input_ids
    prefix = prefix_cache(tiny_reranker.model, prompt[:10])
    ids = torch.tensor([prompt[10:] + [0]])
    mask = torch.tensor([[1] * (len(prompt) - 10) + [0]])
    with pytest.raises(ValueError, match="left-padded"):
        relevance_scores_after_prefix(tiny_reranker.model, prefix, ids, mask, builder.answer_token_ids)
    with pytest.raises(ValueError, match="prefix_ids"):
        prefix_cache(tiny_reranker.model, [])


def test_defaults_follow_device(tiny_model_dir):
    from prorank.loading import CPU_BATCH_SIZE, default_share_prefix

    r = Reranker.from_pretrained(tiny_model_dir, device="cpu")
    assert (r.batch_size, r.share_prefix) == (CPU_BATCH_SIZE, True)
    assert (default_share_prefix("cpu"), default_share_prefix("cuda")) == (True, False)
    # compile excludes prefix sharing: the default gives way, an explicit request raises (above)
    assert Reranker(r.model, r.tokenizer, compile=True).share_prefix is False
    with pytest.raises(ValueError, match="batch_size"):
        Reranker.from_pretrained(tiny_model_dir, device="cpu", batch_size=0)


def test_common_prefix_length():
    import doctest

    from prorank import scoring
    from prorank.scoring import common_prefix_length

    assert doctest.testmod(scoring).failed == 0
    assert common_prefix_length([[5, 6], [5, 6]]) == 2
    assert common_prefix_length([[1], [2]]) == 0
    assert common_prefix_length([]) == 0


def test_rank_fuses_first_stage_scores_with_the_checkpoint_default(tmp_path, tiny_reranker):
    """A checkpoint's dev-tuned fusion and max_length are its defaults; rank() fuses when given
    first-stage scores, and keeps the model's own score next to the fused one."""
    from prorank.fusion import Fusion, interpolate

    out = save_checkpoint(tiny_reranker.model, tiny_reranker.tokenizer, tmp_path / "fused",
                          {"stage": "score", "base_model": "tiny", "max_length": 96,
                           "fusion": {"method": "interpolate", "weight": 0.7}})
    r = Reranker.from_pretrained(out, device="cpu")
    assert r.fusion == Fusion("interpolate", 0.7) and r.max_length == 96
    bm25 = [1.0, 9.0, 4.0, 2.0, 3.0]
    model = r.score(QUERY, DOCS)
    ranked = r.rank(QUERY, DOCS, first_stage_scores=bm25)
    fused = interpolate(model, bm25, 0.7)
    assert [x.index for x in ranked] == sorted(range(len(DOCS)), key=lambda i: (-fused[i], i))
    assert [x.score for x in ranked] == pytest.approx(sorted(fused, reverse=True))
    assert sorted(x.model_score for x in ranked) == pytest.approx(sorted(model))
    # without first-stage scores, or with fusion turned off, the model ranks alone
    assert [x.score for x in r.rank(QUERY, DOCS)] == pytest.approx(sorted(model, reverse=True))
    alone = Reranker.from_pretrained(out, device="cpu", fusion="none", max_length=128)
    assert alone.max_length == 128 and alone.rank(QUERY, DOCS, first_stage_scores=bm25)[0].model_score is None
    with pytest.raises(ValueError, match="first_stage_scores"):
        r.rank(QUERY, DOCS, first_stage_scores=[1.0])
    with pytest.raises(ValueError, match="fusion_weight"):
        Reranker.from_pretrained(out, device="cpu", fusion_weight=2.0)


def test_options_are_the_one_settings_object(tiny_model_dir):
    """``RerankerOptions`` loads the same reranker as the keyword arguments; bad values name the field;
    the generated flags give typed values."""
    import argparse

    from prorank import RerankerOptions
    from prorank.options import add_option_flags, options_from_flags

    opts = RerankerOptions(device="cpu", max_length=96, batch_size=3, normalize=True)
    r = Reranker.from_options(tiny_model_dir, opts)
    assert (r.max_length, r.batch_size, r.normalize) == (96, 3, True)
    same = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=96, batch_size=3, normalize=True)
    assert r.score(QUERY, DOCS) == pytest.approx(same.score(QUERY, DOCS), abs=1e-6)
    for bad, field in (({"batch_size": 0}, "batch_size"), ({"max_length": -1}, "max_length"),
                       ({"fusion": "interpolate", "fusion_weight": 2.0}, "fusion_weight"),
                       ({"compile": True, "share_prefix": True}, "share_prefix")):
        with pytest.raises(ValueError, match=field):
            RerankerOptions(**bad)
    parser = argparse.ArgumentParser()
    add_option_flags(parser)
    args = parser.parse_args(["--max-length", "64", "--normalize", "sigmoid", "--fusion-weight", "0.3", "--device", "cpu"])
    assert options_from_flags(args) == {"max_length": 64, "normalize": "sigmoid", "fusion_weight": 0.3, "device": "cpu"}
    assert options_from_flags(parser.parse_args([])) == {}
