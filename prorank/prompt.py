"""The one ProRank prompt, shared by training (both stages), evaluation and serving.

The user message holds an optional ``instruction: ...`` line, then ``query: ...``,
``document: ...`` and a fixed task text ending in ``Relevance:``; it is rendered with the
model's own chat template and the assistant turn is opened, so the next token is the answer,
``"1"`` (relevant) or ``"0"`` (not relevant). The relevance score is
``logit("1") - logit("0")`` at that position.

Any change to the rendered text must bump ``PROMPT_VERSION``: the version is saved in every
checkpoint and checked when one is loaded (``tests/test_prompt.py`` pins the exact text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

PROMPT_VERSION = "prorank-prompt-v1"

ANSWER_NEGATIVE = "0"
ANSWER_POSITIVE = "1"
LABELS = (ANSWER_NEGATIVE, ANSWER_POSITIVE)

TASK_TEXT = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)

# share of the text budget the query may take at most; the document gets the rest
QUERY_BUDGET_SHARE = 0.75

Document = Union[str, Mapping[str, Any]]


def document_text(document: Document, *, field: str = "documents") -> str:
    """Plain text of a document: a ``str``, or a mapping with ``text`` and optional ``title``."""
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        text = document.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{field}: a document mapping needs a string 'text' field")
        title = document.get("title")
        if title is not None and not isinstance(title, str):
            raise TypeError(f"{field}: a document's 'title' must be a string")
        return f"{title.strip()}\n{text}" if title and title.strip() else text
    raise TypeError(
        f"{field}: each document must be a str or a mapping with 'text', got {type(document).__name__}"
    )


def user_message(query: str, document: str, instruction: str | None = None) -> str:
    """The user turn of the prompt (before the chat template)."""
    lines = []
    if instruction:
        lines.append(f"instruction: {instruction}")
    lines.append(f"query: {query}")
    lines.append(f"document: {document}")
    lines.append(TASK_TEXT)
    return "\n".join(lines)


def messages(query: str, document: str, instruction: str | None = None) -> list[dict[str, str]]:
    return [{"role": "user", "content": user_message(query, document, instruction)}]


@dataclass(frozen=True)
class EncodedPrompt:
    """A rendered, truncated prompt: its text and token ids (the answer comes right after)."""

    text: str
    input_ids: list[int]


class PromptBuilder:
    """Renders and tokenizes prompts for one tokenizer within ``max_length`` tokens.

    Query and document are truncated by tokens, never characters: the query may use at most
    ``QUERY_BUDGET_SHARE`` of the budget left after the template, the document the rest. The
    answer position (the end of the prompt) is never cut.
    """

    def __init__(self, tokenizer: Any, max_length: int = 512) -> None:
        if max_length < 32:
            raise ValueError(f"max_length must be at least 32 tokens, got {max_length}")
        if getattr(tokenizer, "chat_template", None) in (None, ""):
            raise ValueError(
                "the tokenizer has no chat template; ProRank renders its prompt with the model's own template"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.answer_token_ids = tuple(answer_token_id(tokenizer, label) for label in LABELS)
        self._overhead: dict[bool, int] = {}
        self._instruction_lengths: dict[str, int] = {}

    def render(self, query: str, document: str, instruction: str | None = None) -> str:
        """The full prompt text (no truncation), ending where the answer token goes."""
        return self.tokenizer.apply_chat_template(
            messages(query, document, instruction), tokenize=False, add_generation_prompt=True
        )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _ids_many(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts in one tokenizer call (fast tokenizers encode them in parallel)."""
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def _instruction_length(self, instruction: str | None) -> int:
        if not instruction:
            return 0
        if instruction not in self._instruction_lengths:
            if len(self._instruction_lengths) > 1024:
                self._instruction_lengths.clear()
            self._instruction_lengths[instruction] = len(self._ids(instruction))
        return self._instruction_lengths[instruction]

    def _template_overhead(self, instruction: str | None) -> int:
        key = bool(instruction)
        if key not in self._overhead:
            self._overhead[key] = len(self._ids(self.render("", "", "x" if key else None)))
        return self._overhead[key]

    def _budgets(self, query_ids: list[int], instruction: str | None) -> tuple[int, int]:
        """(query tokens kept, document tokens allowed) for this query."""
        instr = self._instruction_length(instruction)
        budget = self.max_length - self._template_overhead(instruction) - instr
        if budget < 8:
            raise ValueError(
                f"max_length={self.max_length} leaves no room for query and document "
                "(the template and instruction take it all)"
            )
        q_keep = min(len(query_ids), int(budget * QUERY_BUDGET_SHARE))
        return q_keep, budget - q_keep

    def encode(
        self, query: str, document: Document, instruction: str | None = None
    ) -> EncodedPrompt:
        """Truncate query and document by tokens so the rendered prompt fits ``max_length``."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.encode_many([(query, document)], instruction)[0]

    def _render_cut(self, query: str, q_ids: list[int], q_keep: int, doc: str, d_ids: list[int],
                    d_keep: int, instruction: str | None) -> str:
        """The prompt of the first ``q_keep`` query and ``d_keep`` document tokens."""
        decode = self.tokenizer.decode
        q_text = query if q_keep == len(q_ids) else decode(q_ids[:q_keep])
        d_text = doc if d_keep == len(d_ids) else decode(d_ids[:d_keep])
        return self.render(q_text, d_text, instruction)

    def _trim(self, query: str, q_ids: list[int], q_keep: int, doc: str, d_ids: list[int],
              d_keep: int, overflow: int, instruction: str | None) -> EncodedPrompt:
        """Cut further a prompt whose joins re-tokenized ``overflow`` tokens over the budget."""
        for _ in range(7):  # with the first try, at most 8 renderings
            d_keep = max(0, d_keep - overflow)  # the document gives way first
            if d_keep == 0 and q_keep > 0:
                q_keep = max(0, q_keep - overflow)
            text = self._render_cut(query, q_ids, q_keep, doc, d_ids, d_keep, instruction)
            ids = self._ids(text)
            overflow = len(ids) - self.max_length
            if overflow <= 0:
                return EncodedPrompt(text=text, input_ids=ids)
        raise ValueError(f"could not fit the prompt into max_length={self.max_length}")

    def windows(
        self, query: str, document: Document, instruction: str | None = None
    ) -> list[str]:
        """Split a document that does not fit into overlapping token windows (50% stride).

        Used by the long-document mode: each window is scored and the document takes the best.
        A document that fits is returned whole, as one window.
        """
        doc = document_text(document)
        d_ids = self._ids(doc)
        _, d_budget = self._budgets(self._ids(query), instruction)
        size = max(1, d_budget - 4)  # slack for re-tokenization at the joins
        if len(d_ids) <= d_budget:
            return [doc]
        step = max(1, size // 2)
        out = []
        for start in range(0, len(d_ids), step):
            out.append(self.tokenizer.decode(d_ids[start : start + size]))
            if start + size >= len(d_ids):
                break
        return out

    def encode_many(
        self, pairs: Sequence[tuple[str, Document]], instruction: str | None = None
    ) -> list[EncodedPrompt]:
        """``encode`` of every pair, with one tokenizer call per kind of text (each distinct query
        once, all documents, all rendered prompts) instead of three per pair: on a GPU, per-pair
        tokenization would otherwise take longer than the model."""
        pairs = list(pairs)
        for i, (query, _) in enumerate(pairs):
            if not isinstance(query, str):
                raise TypeError(f"pairs[{i}]: query must be a str, got {type(query).__name__}")
        docs = [document_text(d) for _, d in pairs]
        queries = list(dict.fromkeys(q for q, _ in pairs))
        query_ids = dict(zip(queries, self._ids_many(queries)))
        cuts, texts = [], []
        for (query, _), doc, d_ids in zip(pairs, docs, self._ids_many(docs)):
            q_ids = query_ids[query]
            q_keep, d_budget = self._budgets(q_ids, instruction)
            cuts.append((query, q_ids, q_keep, doc, d_ids, min(len(d_ids), d_budget)))
            texts.append(self._render_cut(*cuts[-1], instruction))
        out = []
        for cut, text, ids in zip(cuts, texts, self._ids_many(texts)):
            if len(ids) <= self.max_length:  # the first cut almost always fits
                out.append(EncodedPrompt(text=text, input_ids=ids))
            else:  # re-tokenizing at the joins added tokens
                out.append(self._trim(*cut, len(ids) - self.max_length, instruction))
        return out


def answer_token_id(tokenizer: Any, label: str) -> int:
    """Id of the single token that spells ``label`` right after the generation prompt."""
    ids = tokenizer(label, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"answer label {label!r} is not a single token for this tokenizer: {ids}")
    return int(ids[0])
