"""``prorank export --to seq-cls``: the exported model's single logit equals our score."""

from __future__ import annotations

import json

import pytest
import torch

from prorank.prompt import PROMPT_VERSION
from prorank.export import ExportConfig, load_prompt_card, main, score_head, to_seq_cls

PAIRS = [
    ("what do cats eat?", "Cats are obligate carnivores and eat mostly meat."),
    ("what do cats eat?", "The stock market fell sharply on Tuesday after the announcement."),
    ("rust borrow checker", {"title": "Ownership", "text": "Rust's borrow checker enforces ownership."}),
    ("x", "a much longer document " * 20),
]


def _texts(tokenizer, max_length=128):
    from prorank.prompt import PromptBuilder

    builder = PromptBuilder(tokenizer, max_length)
    return builder, [builder.encode(q, d) for q, d in PAIRS]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "seq-cls"
    main(ExportConfig(checkpoint=str(tiny_model_dir), out=str(out), max_length=128))
    return out


def test_export_logit_equals_prorank_score(exported, tiny_reranker) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ours = torch.tensor(tiny_reranker.score_pairs(PAIRS))
    model = AutoModelForSequenceClassification.from_pretrained(exported, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert model.config.num_labels == 1
    _, encoded = _texts(tokenizer)
    texts = [e.text for e in encoded]
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = model(**batch).logits[:, 0]
        assert torch.allclose(logits, ours, atol=1e-4), (side, logits, ours)
    # one at a time, no padding at all (how vLLM / TEI feed sequences)
    for text, want in zip(texts, ours):
        batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            assert model(**batch).logits[0, 0].item() == pytest.approx(want.item(), abs=1e-4)


def test_export_score_row_is_the_label_difference(tiny_model_dir, exported) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    builder, _ = _texts(tokenizer)
    neg, pos = builder.answer_token_ids
    seq = AutoModelForSequenceClassification.from_pretrained(exported, dtype=torch.float32)
    W = lm.get_output_embeddings().weight
    assert torch.equal(seq.score.weight[0], W[pos] - W[neg])
    row, bias = score_head(lm, builder.answer_token_ids)
    assert bias is None and row.shape == (1, W.shape[1])


def test_export_records_the_prompt(exported, tiny_model_dir) -> None:
    card = load_prompt_card(exported)
    assert card["prompt_version"] == PROMPT_VERSION
    assert card["labels"] == ["0", "1"]
    assert card["example_text"].endswith("assistant\n")
    info = json.loads((exported / "prorank_export.json").read_text())
    assert info["format"] == "seq-cls" and info["source"] == str(tiny_model_dir)
    assert "client" in (exported / "README.md").read_text().lower() or "prompt" in (exported / "README.md").read_text()


def test_export_keeps_an_output_layer_bias(tiny_model_dir) -> None:
    """A head with a bias: the exact export needs a score bias, else it must refuse."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    builder, encoded = _texts(tokenizer)
    head = lm.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.normal_()
    lm.set_output_embeddings(biased)
    _, bias = score_head(lm, builder.answer_token_ids)
    assert bias is not None and bias.abs().item() > 0
    with pytest.raises(ValueError, match="bias"):
        to_seq_cls(lm, tokenizer)


def test_export_refuses_to_overwrite(exported, tiny_model_dir) -> None:
    with pytest.raises(ValueError, match="overwrite"):
        main(ExportConfig(checkpoint=str(tiny_model_dir), out=str(exported)))
    with pytest.raises(ValueError, match="seq-cls"):
        main(ExportConfig(checkpoint=str(tiny_model_dir), out=str(exported) + "-x", to="gguf"))  # type: ignore[arg-type]


def test_export_serves_with_sentence_transformers_cross_encoder(exported, tiny_reranker) -> None:
    """CrossEncoder gets plain (query, document) pairs: the exported chat template adds the prompt."""
    st = pytest.importorskip("sentence_transformers")
    model = st.CrossEncoder(str(exported), device="cpu")
    plain = [(q, d if isinstance(d, str) else f"{d['title']}\n{d['text']}") for q, d in PAIRS[:3]]
    got = model.predict(plain, activation_fn=torch.nn.Identity(), batch_size=4)
    ours = tiny_reranker.score_pairs(PAIRS[:3])
    assert list(got) == pytest.approx(ours, abs=1e-4)
    # a document over max_length: CrossEncoder cuts the text and restores the template tail, so the
    # answer position survives (the cut may differ from ProRank's by a token or two)
    long_ids = model.preprocess([PAIRS[3]])["input_ids"][0].tolist()
    answer_tail = tiny_reranker.builder.encode(*PAIRS[3]).input_ids[-60:]
    assert len(long_ids) == 128 and long_ids[-60:] == answer_tail
    # the template renders exactly ProRank's prompt; other conversations keep the original one
    tok = model.tokenizer
    msgs = [{"role": "query", "content": PAIRS[0][0]}, {"role": "document", "content": PAIRS[0][1]}]
    assert tok.apply_chat_template(msgs, tokenize=False) == tiny_reranker.builder.render(*PAIRS[0])
    with_instr = [{"role": "instruction", "content": "find diets"}, *msgs]
    assert tok.apply_chat_template(with_instr, tokenize=False) == tiny_reranker.builder.render(
        *PAIRS[0], instruction="find diets"
    )
    user = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_cli_export(tiny_model_dir, tmp_path, capsys) -> None:
    from prorank.cli import main as cli

    out = tmp_path / "cli-export"
    assert cli(["export", str(tiny_model_dir), str(out), "--to", "seq-cls", "--max-length", "128"]) == 0
    assert (out / "config.json").is_file() and (out / "prorank_score_template.jinja").is_file()
    assert "exported" in capsys.readouterr().out
    assert cli(["export", str(tiny_model_dir), str(out)]) == 2  # exists, no --overwrite
    assert "overwrite" in capsys.readouterr().err


def test_exported_files_have_the_usual_mode(exported) -> None:
    import os

    mask = os.umask(0)
    os.umask(mask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in exported.iterdir() if path.is_file()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~mask, modes
    assert set(modes.values()) == {0o666 & ~mask}, modes
