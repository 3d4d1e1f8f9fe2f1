"""Export a ProRank checkpoint as a standard ``*ForSequenceClassification`` model.

ProRank scores with ``logit("1") - logit("0")`` at the answer position, i.e. with the vector
``W["1"] - W["0"]`` of the output layer (plus ``b["1"] - b["0"]`` if it has a bias) applied to
the last hidden state. That is exactly a one-label classification head, so the export copies the
transformer backbone unchanged and sets the ``score`` head to that derived row -- nothing new is
learned and no layer is added. The result loads with ``AutoModelForSequenceClassification``
(``num_labels=1``).

**The prompt.** These servers score text, so the ProRank prompt must be applied around the
(query, document) pair:

- sentence-transformers ``CrossEncoder`` (>= 5) renders a pair as the messages
  ``[{"role": "query"}, {"role": "document"}]`` through the tokenizer's chat template. The export
  installs a chat template (:func:`score_chat_template`, also saved as
  ``prorank_score_template.jinja``) that renders exactly that as the ProRank prompt (other
  conversations render with the model's original template), so
  ``CrossEncoder(out).predict([(query, doc)])`` returns ``sigmoid(score)`` with no client code.
  Its truncation cuts the end and restores the template tail, which keeps the answer position
  (a document longer than ``max_length`` may be cut a token or two away from where
  ``PromptBuilder`` cuts it; untruncated pairs score identically).
- text-embeddings-inference (``/predict``), vLLM's score/classify API without a template, or any
  other client: send the **fully rendered prompt** as one text, made with
  ``prorank.prompt.PromptBuilder(tokenizer, max_length).encode(query, document).text`` (which
  also truncates query and document by tokens). vLLM can use the saved template file for its
  (query, document) rerank chat template instead.

``prorank_prompt.json`` records the prompt version, layout, task text and an example.

Padding: the exported models pool the *rightmost token that is not the pad token* -- for our
prompts that is the answer position with left or right padding alike (the prompt always ends
with the assistant-turn opener, never with the pad token). ``config.pad_token_id`` is set.
Position ids of left-padded rows are shifted, which rotary embeddings do not see (relative
positions), so scores agree within float rounding (tested to 1e-4).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from prorank.atomic import atomic_dir, atomic_write_json, atomic_write_text
from prorank.prompt import LABELS, PROMPT_VERSION, TASK_TEXT, PromptBuilder

EXPORT_PROMPT_FILE = "prorank_prompt.json"
SCORE_TEMPLATE_FILE = "prorank_score_template.jinja"


@dataclass
class ExportConfig:
    """``prorank export CHECKPOINT --to seq-cls OUT``."""

    checkpoint: str
    out: str
    to: Literal["seq-cls"] = "seq-cls"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_length: int = 512  # the truncation budget recorded for clients
    overwrite: bool = False


def score_head(model: Any, answer_token_ids: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W["1"] - W["0"], b["1"] - b["0"] or None)`` from the output layer of a causal LM."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError("the model has no output layer (get_output_embeddings() is None)")
    neg, pos = answer_token_ids
    weight = head.weight.detach()
    row = (weight[pos].float() - weight[neg].float()).unsqueeze(0)
    bias = getattr(head, "bias", None)
    diff = None
    if bias is not None:
        diff = (bias.detach()[pos].float() - bias.detach()[neg].float()).reshape(1)
    return row, diff


def to_seq_cls(model: Any, tokenizer: Any) -> Any:
    """Build the ``AutoModelForSequenceClassification`` twin of ``model`` (weights shared by copy)."""
    from transformers import AutoModelForSequenceClassification

    builder = PromptBuilder(tokenizer, max_length=64)
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_labels = 1
    config.id2label = {0: "relevance"}
    config.label2id = {"relevance": 0}
    config.problem_type = "regression"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token")
    config.pad_token_id = pad
    config.architectures = None
    try:
        seq = AutoModelForSequenceClassification.from_config(config, dtype=model.dtype)
    except ValueError as err:
        raise ValueError(
            f"transformers has no sequence-classification class for model type "
            f"{config.model_type!r}: {err}"
        ) from None
    prefix = seq.base_model_prefix
    backbone = getattr(seq, prefix)
    missing, unexpected = backbone.load_state_dict(model.get_decoder().state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"backbone weights do not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    row, bias = score_head(model, builder.answer_token_ids)
    head = seq.score if hasattr(seq, "score") else None
    if head is None or not isinstance(head, torch.nn.Linear):
        raise ValueError(f"{type(seq).__name__} has no linear 'score' head to hold W['1'] - W['0']")
    with torch.no_grad():
        head.weight.copy_(row.to(head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_((bias if bias is not None else torch.zeros(1)).to(head.bias.dtype))
        elif bias is not None and float(bias.abs().max()) != 0.0:
            raise ValueError(
                f"the output layer has a bias (b['1'] - b['0'] = {float(bias):.6g}) but "
                f"{type(seq).__name__}.score has none; this model cannot be exported exactly"
            )
    seq.eval()
    return seq


_SENTINELS = {"instruction": "\ue000I\ue000", "query": "\ue000Q\ue000", "document": "\ue000D\ue000"}


def _pieces(text: str, order: list[str]) -> list[str]:
    """Split a rendered prompt at the sentinels of ``order`` into the literal pieces around them."""
    pieces = []
    for role in order:
        mark = _SENTINELS[role]
        if text.count(mark) != 1:
            raise ValueError(f"the chat template does not render the {role} exactly once; cannot export it")
        head, text = text.split(mark)
        pieces.append(head)
    return pieces + [text]


def score_chat_template(tokenizer: Any) -> str:
    """A chat template that renders ``[{"role": "query"}, {"role": "document"}]`` as our prompt.

    This is the convention of sentence-transformers' ``CrossEncoder`` (and of vLLM's rerank
    templates): a (query, document) pair becomes two messages with those roles. An optional
    ``{"role": "instruction"}`` message adds the instruction line. Any other conversation is
    rendered by the model's original template, unchanged. The literal pieces come from
    ``PromptBuilder.render`` itself, so the text is identical to ProRank's (untruncated) prompt.
    """
    original = tokenizer.chat_template
    if not isinstance(original, str) or not original:
        raise ValueError("the tokenizer has no (single) chat template to extend")
    builder = PromptBuilder(tokenizer, max_length=64)
    plain = _pieces(builder.render(_SENTINELS["query"], _SENTINELS["document"]), ["query", "document"])
    instr = _pieces(
        builder.render(_SENTINELS["query"], _SENTINELS["document"], _SENTINELS["instruction"]),
        ["instruction", "query", "document"],
    )
    lit = json.dumps
    return (
        "{#- ProRank " + PROMPT_VERSION + ": (query, document[, instruction]) messages -> relevance prompt -#}\n"
        "{%- set pr = namespace(q=none, d=none, i=none) -%}\n"
        "{%- for m in messages -%}{%- if m.role == 'query' -%}{%- set pr.q = m.content -%}"
        "{%- elif m.role == 'document' -%}{%- set pr.d = m.content -%}"
        "{%- elif m.role == 'instruction' -%}{%- set pr.i = m.content -%}{%- endif -%}{%- endfor -%}\n"
        "{%- if pr.q is not none and pr.d is not none -%}\n"
        "{%- if pr.i -%}"
        f"{{{{ {lit(instr[0])} }}}}{{{{ pr.i }}}}{{{{ {lit(instr[1])} }}}}{{{{ pr.q }}}}"
        f"{{{{ {lit(instr[2])} }}}}{{{{ pr.d }}}}{{{{ {lit(instr[3])} }}}}"
        "{%- else -%}"
        f"{{{{ {lit(plain[0])} }}}}{{{{ pr.q }}}}{{{{ {lit(plain[1])} }}}}{{{{ pr.d }}}}{{{{ {lit(plain[2])} }}}}"
        "{%- endif -%}\n"
        "{%- else -%}\n" + original + "\n{%- endif -%}\n"
    )


def prompt_card(tokenizer: Any, max_length: int) -> dict[str, Any]:
    """What a client needs to render the prompt itself (saved as ``prorank_prompt.json``)."""
    builder = PromptBuilder(tokenizer, max_length=max_length)
    example = builder.encode("what is bm25?", "BM25 is a ranking function used by search engines.")
    plain = tokenizer(example.text)["input_ids"]
    return {
        "prompt_version": PROMPT_VERSION,
        "labels": list(LABELS),
        "answer_token_ids": list(builder.answer_token_ids),
        "user_message": "[instruction: {instruction}\\n]query: {query}\\ndocument: {document}\\n" + TASK_TEXT,
        "task_text": TASK_TEXT,
        "chat_template": "the tokenizer's own chat template, one user turn, add_generation_prompt=True",
        "max_length": max_length,
        "truncation": "query and document truncated by tokens (query <= 75% of the budget); "
        "use prorank.prompt.PromptBuilder(tokenizer, max_length).encode(query, document).text",
        "score": "logit of the single label = logit('1') - logit('0'); sigmoid(score) = P('1') "
        "among the two labels",
        "example_query": "what is bm25?",
        "example_document": "BM25 is a ranking function used by search engines.",
        "example_text": example.text,
        "tokenizer_adds_special_tokens": plain != example.input_ids,
    }


_README = """# ProRank reranker (sequence-classification export)

Exported from `{checkpoint}` by `prorank export` (prompt version `{version}`).
The single logit equals ProRank's score `logit("1") - logit("0")` at the answer position;
`sigmoid(logit)` is P("1") among the two answer labels.

sentence-transformers applies the ProRank prompt itself (through the chat template saved here):

```python
from sentence_transformers import CrossEncoder
model = CrossEncoder("{out}")
scores = model.predict([(query, document)])  # sigmoid(score); activation_fn=torch.nn.Identity() for raw
```

Every other client (text-embeddings-inference `/predict`, vLLM without a chat template, plain
`transformers`) must **apply the prompt on the client side** and send it as one text:

```python
from transformers import AutoTokenizer
from prorank.prompt import PromptBuilder
builder = PromptBuilder(AutoTokenizer.from_pretrained("{out}"), max_length={max_length})
text = builder.encode(query, document).text
```

`prorank_prompt.json` describes the prompt (layout, task text, an example) and
`prorank_score_template.jinja` is the (query, document) chat template.
"""


def main(cfg: ExportConfig) -> Path:
    """Write the export of ``cfg.checkpoint`` to ``cfg.out``; returns the output folder."""
    from prorank.loading import load_model

    if cfg.to != "seq-cls":
        raise ValueError(f"to: only 'seq-cls' is supported, got {cfg.to!r}")
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"out: {out} already exists (pass --overwrite to replace it)")
    # any source the Reranker accepts: checkpoint, LoRA adapter (merged), alias, folder, .gguf
    loaded = load_model(cfg.checkpoint, dtype="auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype))
    model, tokenizer = loaded.model, loaded.tokenizer
    seq = to_seq_cls(model, tokenizer)
    meta = loaded.metadata or {}
    card = prompt_card(tokenizer, cfg.max_length)
    template = score_chat_template(tokenizer)
    tokenizer.chat_template = template
    tokenizer.model_max_length = cfg.max_length
    with atomic_dir(out) as tmp:
        seq.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _new_file_modes(tmp)
        atomic_write_text(tmp / SCORE_TEMPLATE_FILE, template)
        atomic_write_json(tmp / EXPORT_PROMPT_FILE, card)
        atomic_write_json(
            tmp / "prorank_export.json",
            {
                "format": "seq-cls",
                "source": str(cfg.checkpoint),
                "source_metadata": meta,
                "prompt_version": PROMPT_VERSION,
                "score_head": "W['1'] - W['0'] of the output layer (+ bias difference if any)",
            },
        )
        atomic_write_text(
            tmp / "README.md",
            _README.format(checkpoint=cfg.checkpoint, version=PROMPT_VERSION, out=out, max_length=cfg.max_length),
        )
    return out


def _new_file_modes(folder: Path) -> None:
    """Give every file in ``folder`` the mode a new file gets (0644 under umask 022): transformers
    writes ``model.safetensors`` as 0600 (a temporary file renamed), the other files as 0644."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o666 & ~mask)


def load_prompt_card(path: str | Path) -> dict[str, Any]:
    """Read ``prorank_prompt.json`` of an export folder."""
    file = Path(path) / EXPORT_PROMPT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: not a ProRank export")
    return json.loads(file.read_text(encoding="utf-8"))
