"""The one prompt: exact text pinned, token truncation, answer tokens."""

from __future__ import annotations

import pytest

from prorank.prompt import PROMPT_VERSION, PromptBuilder, document_text, user_message

EXPECTED = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n"
    "query: What causes rain?\n"
    "document: Clouds\nRain forms when water droplets in clouds grow heavy and fall.\n"
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_prompt_version_is_pinned():
    # Changing the rendered prompt must come with a new version string (and a new EXPECTED).
    assert PROMPT_VERSION == "prorank-prompt-v1"


def test_rendered_prompt_is_pinned(real_tokenizer):
    builder = PromptBuilder(real_tokenizer, max_length=512)
    doc = {"title": "Clouds", "text": "Rain forms when water droplets in clouds grow heavy and fall."}
    assert builder.render("What causes rain?", document_text(doc)) == EXPECTED
    encoded = builder.encode("What causes rain?", doc)
    assert encoded.text == EXPECTED
    assert encoded.input_ids == real_tokenizer(EXPECTED, add_special_tokens=False)["input_ids"]


def test_instruction_line_comes_first():
    msg = user_message("q", "d", instruction="Find scientific evidence")
    assert msg.splitlines()[:3] == ["instruction: Find scientific evidence", "query: q", "document: d"]
    assert msg.endswith("Relevance:")
    assert "instruction:" not in user_message("q", "d")


def test_answer_tokens_are_single_tokens(real_tokenizer):
    builder = PromptBuilder(real_tokenizer, max_length=64)
    neg, pos = builder.answer_token_ids
    assert real_tokenizer.decode([neg]) == "0" and real_tokenizer.decode([pos]) == "1"


@pytest.mark.parametrize("max_length", [112, 128, 256])
def test_truncation_fits_and_keeps_answer_position(real_tokenizer, max_length):
    builder = PromptBuilder(real_tokenizer, max_length=max_length)
    query = "effects of vitamin D on bone density " * 40
    doc = "Vitamin D regulates calcium absorption in the gut. " * 200
    encoded = builder.encode(query, doc)
    assert len(encoded.input_ids) <= max_length
    suffix = "Relevance:<|im_end|>\n<|im_start|>assistant\n"
    assert encoded.text.endswith(suffix)
    # the query may take at most 3/4 of the budget: the document keeps some tokens
    doc_part = encoded.text.split("\ndocument: ", 1)[1].split("\nYou are a search", 1)[0]
    assert len(doc_part) > 0
    q_part = encoded.text.split("query: ", 1)[1].split("\ndocument: ", 1)[0]
    budget = max_length - builder._template_overhead(None)
    assert len(real_tokenizer(q_part, add_special_tokens=False)["input_ids"]) <= int(0.75 * budget) + 1


def test_short_inputs_are_not_truncated(real_tokenizer):
    builder = PromptBuilder(real_tokenizer, max_length=512)
    encoded = builder.encode("short query", "short document")
    assert "query: short query\ndocument: short document\n" in encoded.text


def test_long_document_windows_cover_the_document(real_tokenizer):
    builder = PromptBuilder(real_tokenizer, max_length=128)
    doc = " ".join(f"word{i}" for i in range(400))
    windows = builder.windows("q", doc)
    assert len(windows) > 2
    assert "word0" in windows[0] and "word399" in windows[-1]
    for window in windows:
        assert len(builder.encode("q", window).input_ids) <= 128
    assert builder.windows("q", "tiny doc") == ["tiny doc"]


@pytest.mark.parametrize("bad", [None, 3, ["text"], {"title": "no text"}, {"text": 5}])
def test_bad_documents_raise_type_error(bad):
    with pytest.raises(TypeError, match="documents"):
        document_text(bad)


def test_tiny_max_length_rejected(real_tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        PromptBuilder(real_tokenizer, max_length=8)
    builder = PromptBuilder(real_tokenizer, max_length=64)  # template alone is longer
    with pytest.raises(ValueError, match="max_length"):
        builder.encode("q", "d")


def test_encode_many_equals_encode_pair_by_pair(real_tokenizer):
    """The batched path gives exactly ``encode``'s prompts, including the rare pairs whose first
    cut re-tokenizes longer at the joins (pair 552 of this seeded stream at max_length 160)."""
    import random

    builder = PromptBuilder(real_tokenizer, max_length=160)
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "  ", "\n", "é", "ab", "1", ".", "-", "😀", "\t", "x y"]
    pairs = [("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200))),
              "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 400)))) for _ in range(560)]
    pairs += [("effects of vitamin D " * 30, {"title": "Bone", "text": "Calcium absorption. " * 90}),
              ("short query", "short document"), ("short query", "another document")]
    many = builder.encode_many(pairs)
    assert many == [builder.encode(q, d) for q, d in pairs]
    for e in many:  # every prompt fits, and its ids are its text's
        assert len(e.input_ids) <= 160
        assert e.input_ids == real_tokenizer(e.text, add_special_tokens=False)["input_ids"]
    # pair 552's first cut re-tokenizes over the budget: the trimming path ran and still fits
    q, d = pairs[552]
    q_ids, d_ids = builder._ids(q), builder._ids(d)
    q_keep, d_budget = builder._budgets(q_ids, None)
    first = builder._render_cut(q, q_ids, q_keep, d, d_ids, min(len(d_ids), d_budget), None)
    assert len(builder._ids(first)) > 160 and many[552].text != first
    instructed = builder.encode_many(pairs[-3:], instruction="Find evidence")
    assert instructed == [builder.encode(q, d, "Find evidence") for q, d in pairs[-3:]]
    assert all(len(e.input_ids) <= 160 for e in instructed)
    assert builder.encode_many([]) == []
    with pytest.raises(TypeError, match="query"):
        builder.encode_many([(3, "doc")])
    with pytest.raises(TypeError, match="documents"):
        builder.encode_many([("q", 3)])
