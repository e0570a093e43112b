"""SFT throughput on the embedded data: build (samples/s), collation (batches/s) and training
steps (forward + backward + AdamW; step time and tokens/s) for a model config.

    python benchmarks/sft_throughput.py                          # tiny model, CPU
    python benchmarks/sft_throughput.py --device cuda --dtype bfloat16 --batch-size 16

Prints a table and writes benchmarks/results/sft_throughput-<device>.json. Numbers go to
benchmarks/README.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from m2r.config import DataConfig, ModelConfig
from m2r.data.build import build_data
from m2r.data.collate import SFTCollator
from m2r.data.shards import sample_stream, shard_urls
from m2r.model.load import build_model, load_processor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--per-task", type=int, default=16)
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "m2r"))
    args = ap.parse_args()

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = build_data(DataConfig(train_per_task=args.per_task, val_per_task=1), tmp, seed=0, force=True)
        n = args.per_task * 12 + 12
        results["build_samples_per_s"] = n / (time.perf_counter() - t0)

        model_cfg = ModelConfig(dtype=args.dtype)
        processor = load_processor(model_cfg, args.cache_dir)
        items = list(sample_stream(shard_urls(root, "train"), shuffle_shards=True, shuffle_buffer=64, seed=1))
        collate = SFTCollator(processor, max_length=512)
        batches = [items[i : i + args.batch_size] for i in range(0, len(items) - args.batch_size + 1, args.batch_size)]
        t0 = time.perf_counter()
        encoded = [collate(b) for b in batches]
        results["collate_batches_per_s"] = len(batches) / (time.perf_counter() - t0)

        model = build_model(model_cfg, processor).to(args.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times, tokens = [], []
        for step in range(args.steps + 3):
            batch = {k: v.to(args.device) for k, v in encoded[step % len(encoded)].items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if step >= 3:  # warm-up steps excluded
                times.append(time.perf_counter() - t0)
                tokens.append(int(batch["attention_mask"].sum()))
        results["step_s_median"] = statistics.median(times)
        results["tokens_per_s"] = sum(tokens) / sum(times)
        results["mean_seq_tokens"] = sum(tokens) / len(tokens) / args.batch_size
    results |= {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size, "threads": torch.get_num_threads()}

    table = Table(title="SFT throughput (tiny Qwen2.5-VL, embedded data)")
    for k in ("key", "value"):
        table.add_column(k)
    for k, v in results.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    Console().print(table)
    out = Path(__file__).parent / "results" / f"sft_throughput-{args.device.split(':')[0]}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
