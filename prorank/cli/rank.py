"""``prorank rank``: rank documents from a file against one query, print JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prorank.config import check_positive, from_dict
from prorank.options import RerankerOptions, add_option_flags, options_from_flags
from prorank.registry import DEFAULT_MODEL


def read_documents(path: str) -> list:
    """JSONL (objects with ``text`` and optional ``title``, or JSON strings) or one document per line."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if path.endswith((".jsonl", ".json")):
        docs = []
        for number, line in enumerate(lines, 1):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None
            if not isinstance(doc, (str, dict)) or (isinstance(doc, dict) and "text" not in doc):
                raise ValueError(f"{path}:{number}: expected a string or an object with 'text'")
            docs.append(doc)
        return docs
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rank",
        help="rank documents from a file against a query (prints JSON)",
        description="Score every document against QUERY and print the ranking as JSON: "
        "[{index, score, document?}], best first. --docs takes JSONL ({'text', 'title'?} "
        "objects, for .jsonl/.json) or plain text with one document per line ('-' reads stdin).",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="alias, hub id, folder, .gguf, LoRA adapter or checkpoint "
                        "(default: %(default)s)")
    parser.add_argument("--query", help="the query text (one query: with --docs)")
    parser.add_argument("--docs", help="documents file (.jsonl or one per line; - for stdin)")
    batch = parser.add_argument_group("batch mode: rerank a first-stage TREC run (pyserini style)")
    batch.add_argument("--run", help="TREC run file of the first stage (qid Q0 docid rank score tag)")
    batch.add_argument("--dataset", help="BEIR folder or name holding queries.jsonl and corpus.jsonl")
    batch.add_argument("--output", help="TREC run file to write (the reranked run)")
    batch.add_argument("--cache", default=None,
                       help="score cache file (default $PRORANK_HOME/cache/scores.sqlite; 'none' disables)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="keep only the best K (batch mode: rerank each query's top K, default 100)")
    parser.add_argument("--instruction", default=None, help="optional task instruction line")
    parser.add_argument("--return-documents", action="store_true", help="include document text")
    add_option_flags(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from prorank import Reranker

    # everything is checked before the model loads
    check_positive("--top-k", args.top_k, optional=True)
    options = from_dict(RerankerOptions, options_from_flags(args), "prorank rank")
    if args.run is not None:
        return _run_batch(args, options)
    if args.query is None or args.docs is None:
        raise ValueError("give --query and --docs (one query), or --run, --dataset and --output (batch mode)")
    docs = read_documents(args.docs)
    if not docs:
        raise ValueError(f"--docs {args.docs}: no documents to rank")
    reranker = Reranker.from_options(args.model, options)
    results = reranker.rank(args.query, docs, top_k=args.top_k,
                            return_documents=args.return_documents, instruction=args.instruction)
    out = []
    for r in results:
        item = {"index": r.index, "score": r.score}
        if args.return_documents:
            item["document"] = r.document
        out.append(item)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _run_batch(args: argparse.Namespace, options: RerankerOptions) -> int:
    """Rerank every query of a first-stage TREC run; write the reranked run (TREC)."""
    from prorank import Reranker
    from prorank.data import load_corpus, load_queries, resolve_dataset
    from prorank.evaluation.cache import open_cache
    from prorank.evaluation.rerank import rerank_run, run_hits
    from prorank.evaluation.trec import read_run, write_run

    if args.dataset is None or args.output is None:
        raise ValueError("batch mode needs --dataset (queries and corpus) and --output (the reranked run)")
    folder = resolve_dataset(args.dataset)
    queries, corpus = load_queries(folder / "queries.jsonl"), load_corpus(folder / "corpus.jsonl")
    run = read_run(args.run)
    missing = sorted(q for q in run if q not in queries)
    if missing:
        raise ValueError(f"--run {args.run}: {len(missing)} query id(s) not in {folder}/queries.jsonl, e.g. {missing[:3]}")
    candidates = run_hits(run)
    reranker = Reranker.from_options(args.model, options)
    cache = open_cache(args.cache)
    try:
        reranked, stats = rerank_run(reranker, queries, candidates, corpus, args.top_k or 100, cache=cache,
                                     instruction=args.instruction)
    finally:
        if cache is not None:
            cache.close()
    write_run(args.output, reranked, tag="prorank-rerank")
    print(json.dumps({"queries": len(reranked), "pairs": stats.pairs, "scored": stats.scored,
                      "cached": stats.cached, "output": args.output}))
    return 0
