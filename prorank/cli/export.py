"""``prorank export CHECKPOINT --to seq-cls OUT``: a standard sequence-classification model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export a checkpoint for other servers (seq-cls: CrossEncoder, TEI, vLLM)",
        description="Write CHECKPOINT as an AutoModelForSequenceClassification model with one "
        "label whose weight row is W['1'] - W['0'] of the output layer, so its logit equals "
        "ProRank's score. sentence-transformers' CrossEncoder applies the ProRank prompt to "
        "(query, document) pairs through the exported chat template; other clients must send "
        "the rendered prompt (see OUT/README.md and OUT/prorank_prompt.json).",
    )
    parser.add_argument("checkpoint", help="ProRank checkpoint, model folder, alias, adapter or .gguf")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--to", default="seq-cls", choices=["seq-cls", "adapter"],
                        help="seq-cls (default): a sequence-classification model; adapter: a LoRA "
                        "checkpoint as a compact adapter (float16) with its sha256 sums, the form a "
                        "bundled reranker ships in")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype (default: as stored)")
    parser.add_argument("--max-length", type=int, default=512,
                        help="prompt token budget recorded for clients (default 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from prorank.export import ExportConfig, main

    if args.to == "adapter":
        from prorank.adapter_export import export_adapter

        dtype = "float16" if args.dtype == "auto" else args.dtype
        for name, digest in export_adapter(args.checkpoint, args.out, dtype, args.overwrite).items():
            print(f"{digest}  {name}")
        print(f"exported {args.checkpoint} -> {args.out} (adapter, {dtype})")
        return 0
    out = main(ExportConfig(checkpoint=args.checkpoint, out=args.out, to=args.to, dtype=args.dtype,
                            max_length=args.max_length, overwrite=args.overwrite))
    print(f"exported {args.checkpoint} -> {out} ({args.to})")
    return 0
