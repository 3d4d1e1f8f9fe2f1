"""Subprocess worker that scores pairs with ``mxbai-rerank`` 0.1.6 for ``throughput.py``.

mxbai-rerank does not run under transformers 5.x, so it lives in its own venv (transformers
4.57.6, see ``throughput.py --mxbai-python``). This script imports nothing from ``prorank``.

On start it makes sure a model folder readable by transformers 4.57 exists (a folder written by
5.x stores its RoPE settings under ``rope_parameters``, which 4.57 ignores, silently falling back
to the wrong ``rope_theta``): it converts the verified GGUF file once, exactly like
``prorank.registry.convert_gguf`` does in 5.x. Then it loads ``MxbaiRerankV2`` and answers JSON
requests, one per line on stdin, one JSON reply per line on stdout:

- ``{"op": "set_pairs", "queries": [...], "documents": [...]}``
- ``{"op": "encode"}`` -> ``{"input_ids": [[...], ...]}`` mxbai's own prompt ids per pair, unpadded
- ``{"op": "score", "batch_size": 16, "limit": null}`` -> ``{"seconds", "cpu_seconds", "scores",
  "real_tokens", "padded_tokens"}``, timed around mxbai's ``_compute_scores`` (the routine behind
  its public ``rank()``: length-bucketed batches of ``batch_size``)
- ``{"op": "quit"}``

Everything else the libraries print goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _reply(channel, obj: dict) -> None:
    channel.write(json.dumps(obj) + "\n")
    channel.flush()


def convert(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_file`` with this venv's transformers into ``out_dir`` (atomic rename)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, torch_dtype=torch.float32
    )
    model.hf_quantizer = None  # already dequantized; lets save_pretrained run
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "source.json").write_text(
        json.dumps({"gguf": str(gguf_file), "transformers": transformers.__version__}), "utf-8"
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default="", help="GGUF file to convert if --model-dir is missing")
    parser.add_argument("--model-dir", required=True, help="4.57-written model folder (cache)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()

    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # keep the protocol channel clean

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        if not args.gguf:
            raise SystemExit(f"[mxbai] {model_dir} has no config.json and no --gguf was given to convert")
        print(f"[mxbai] converting {args.gguf} -> {model_dir} with transformers 4.57", file=sys.stderr)
        convert(Path(args.gguf), model_dir)

    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    if "rope_parameters" in config and "rope_theta" not in config:
        # transformers 4.x reads only rope_theta; without it the model would silently use another base
        raise SystemExit(f"[mxbai] {model_dir}/config.json has rope_parameters but no rope_theta")

    import mxbai_rerank
    import transformers
    from mxbai_rerank import MxbaiRerankV2

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"[mxbai] --device {args.device}: this venv's torch {torch.__version__} has no CUDA")
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    reranker = MxbaiRerankV2(
        str(model_dir), device=args.device, torch_dtype=dtype, max_length=args.max_length,
        disable_transformers_warnings=True,
    )
    counts = {"real": 0, "padded": 0}
    original_prepare = reranker.prepare_inputs

    def counting_prepare(*a, **kw):  # count real and padded tokens of every batch mxbai builds
        inputs = original_prepare(*a, **kw)
        counts["real"] += int(inputs["attention_mask"].sum())
        counts["padded"] += int(inputs["input_ids"].numel())
        return inputs

    reranker.prepare_inputs = counting_prepare
    _reply(channel, {
        "ready": True,
        "versions": {
            "python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__,
            "mxbai-rerank": getattr(mxbai_rerank, "__version__", None) or _dist_version("mxbai-rerank"),
        },
        "threads": torch.get_num_threads(),
        "dtype": str(reranker.model.dtype),
        "attn_implementation": reranker.model.config._attn_implementation,
    })
    queries: list[str] = []
    documents: list[str] = []
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        if op == "set_pairs":
            queries, documents = list(request["queries"]), list(request["documents"])
            _reply(channel, {"ok": True, "pairs": len(queries)})
        elif op == "encode":
            ids = []
            for q, d in zip(queries, documents):
                enc = original_prepare([q], [d])
                ids.append(enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist())
            _reply(channel, {"input_ids": ids})
        elif op == "score":
            limit = request.get("limit") or len(queries)
            counts["real"] = counts["padded"] = 0
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start, cpu = time.perf_counter(), time.process_time()
            scores = reranker._compute_scores(
                queries=queries[:limit], documents=documents[:limit],
                batch_size=int(request["batch_size"]), show_progress=False,
            )
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            _reply(channel, {"seconds": seconds, "cpu_seconds": cpu, "scores": [float(s) for s in scores],
                             "real_tokens": counts["real"], "padded_tokens": counts["padded"]})
        elif op == "quit":
            _reply(channel, {"ok": True})
            return
        else:
            _reply(channel, {"error": f"unknown op {op!r}"})


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
