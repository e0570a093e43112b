"""GRPO throughput: m2r's step against TRL's `GRPOTrainer` on the identical model, prompts, G, forced completion
length, beta (with a reference model) and token-level loss.

    python benchmarks/grpo_throughput.py                                  # tiny model, CPU, B=4, G=8, 128 tokens
    python benchmarks/grpo_throughput.py --G 16 --images 2                # G=16, two images per prompt
    python benchmarks/grpo_throughput.py --rounds 5                       # both sides 5 times, median ratio
    python benchmarks/grpo_throughput.py --device cuda --model 3b --B 4 --G 16 --tokens 512   # shape-real 3B, random weights

Every completion is forced to `--tokens` tokens (EOS suppressed by `min_new_tokens` on both sides), and the number of
completion tokens each side trained on is checked. Prints seconds per step (median after warm-up), completion tokens
per second, peak memory, and m2r's phase breakdown; writes benchmarks/results/grpo_throughput-<device>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from m2r.config import ModelConfig
from m2r.data.tasks import generate as make_sample
from m2r.model.load import build_model, load_processor

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the whole process, both sides so far


def _prompts(B: int, images: int):
    out = []
    for i in range(B):
        sample, imgs = make_sample("spatial/count", i, 0, "bench", 168, 0.0)
        imgs = (list(imgs) * images)[:images]
        sample.images = [f"img{k}.png" for k in range(images)]
        out.append((sample, imgs))
    return out


def run_m2r(args, processor, base, batch) -> dict:
    import lightning as L

    from m2r.callbacks.history import MetricHistory
    from m2r.modules.grpo import GRPOModule
    from m2r.rewards.router import Scored
    from m2r.rl.engine import HFEngine

    class Constant:  # rewards cost nothing here (their cost is benchmarks/reward_latency.py's)
        def score(self, response, sample):
            v = float(len(response) % 2)
            return Scored(total=v, accuracy=v, values={"acc": v})

    factory = lambda: copy.deepcopy(base).train()  # noqa: E731
    module = GRPOModule(factory, processor, Constant(), ref_factory=lambda: copy.deepcopy(base), G=args.G, beta=0.01, aggregation="token",
                        max_new_tokens=args.tokens, micro_batch_size=args.B * args.G, lr=1e-6, scheduler="constant", max_prompt_length=None,
                        engine=HFEngine(min_new_tokens=args.tokens))  # no end token before `tokens`: every completion is that long
    history = MetricHistory()
    steps = args.warmup + args.steps
    trainer = L.Trainer(max_steps=steps, accelerator=args.device, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[history], log_every_n_steps=1, precision="bf16-mixed" if args.device == "cuda" else "32-true")
    loader = torch.utils.data.DataLoader([batch] * steps, batch_size=None, collate_fn=lambda x: x)
    trainer.fit(module, loader)
    rows = history.rows[args.warmup :]
    tokens = [r["train/len_mean"] * args.B * args.G for r in rows]
    return {
        "seconds_per_step": statistics.median(r["train/step_time"] for r in rows),
        "completion_tokens_per_step": statistics.median(tokens),
        "phases": {k.split("/")[-1]: statistics.median(r[k] for r in rows) for k in rows[0] if k.startswith("train/time/")},
    }


def run_trl(args, processor, base, batch) -> dict:
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback

    rows = [{"prompt": [{"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
                        {"role": "user", "content": [*([{"type": "image"}] * args.images), {"type": "text", "text": s.question}]}],
             "images": imgs} for s, imgs in batch]
    ds = Dataset.from_list(rows * (args.warmup + args.steps + 1))

    def reward(prompts, completions, **kw):
        return [float(len(str(c)) % 2) for c in completions]

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            self.times.append(time.perf_counter() - self.t)

    clock = Clock()
    config = trl.GRPOConfig(
        output_dir=str(ROOT / "benchmarks" / "results" / "trl_tmp"), use_cpu=args.device == "cpu", bf16=args.device == "cuda",
        num_generations=args.G, per_device_train_batch_size=args.B * args.G, gradient_accumulation_steps=1, max_completion_length=args.tokens,
        generation_kwargs={"min_new_tokens": args.tokens}, beta=0.01, loss_type="dapo", learning_rate=1e-6, lr_scheduler_type="constant",
        max_steps=args.warmup + args.steps, report_to=[], logging_steps=1, save_strategy="no", temperature=1.0, top_p=1.0, top_k=0,
        use_vllm=False, use_bias_correction_kl=False, shuffle_dataset=False,
    )
    saved = ROOT / "benchmarks" / "results" / "trl_base"  # TRL builds its reference model from the policy's config path
    base.save_pretrained(saved)
    model = copy.deepcopy(base)
    model.config._name_or_path = str(saved)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=ds, processing_class=processor, callbacks=[clock])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h][args.warmup :]
    return {
        "seconds_per_step": statistics.median(clock.times[args.warmup :]),
        "completion_tokens_per_step": statistics.median(h["completions/mean_length"] * args.B * args.G for h in logs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="tiny", choices=["tiny", "3b"])
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", choices=["m2r", "trl"], default=None)
    ap.add_argument("--rounds", type=int, default=1, help="run both sides this many times, alternating which goes first; "
                    "the ratio reported is the median of the rounds' ratios (a shared CPU's speed drifts over minutes)")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "m2r"))
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = ModelConfig() if args.model == "tiny" else ModelConfig(name="qwen2_5_vl_3b_random", source="random", shape="3b", dtype="float32")
    processor = load_processor(cfg, args.cache_dir)
    base = build_model(cfg, processor)
    batch = _prompts(args.B, args.images)
    result = {"device": args.device, "model": args.model, "B": args.B, "G": args.G, "tokens": args.tokens, "images": args.images, "rounds": []}
    sides = [(name, fn) for name, fn in (("m2r", run_m2r), ("trl", run_trl)) if args.only in (None, name)]
    for k in range(args.rounds):
        row = {}
        for name, fn in sides if k % 2 == 0 else sides[::-1]:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            r = fn(args, processor, base, batch)
            r["peak_mb"] = _peak_mb(args.device)
            r["tokens_per_s"] = r["completion_tokens_per_step"] / r["seconds_per_step"]
            row[name] = r
        if len(row) == 2:
            row["m2r_over_trl_time"] = row["m2r"]["seconds_per_step"] / row["trl"]["seconds_per_step"]
            row["same_tokens"] = abs(row["m2r"]["completion_tokens_per_step"] - row["trl"]["completion_tokens_per_step"]) < 0.5
            print(f"round {k + 1}: m2r {row['m2r']['seconds_per_step']:.3f} s, TRL {row['trl']['seconds_per_step']:.3f} s, "
                  f"m2r/TRL {row['m2r_over_trl_time']:.3f}, same tokens {row['same_tokens']}", flush=True)
        result["rounds"].append(row)
    for name, _ in sides:  # the round whose step time is the median, per side
        runs = sorted((r[name] for r in result["rounds"]), key=lambda r: r["seconds_per_step"])
        result[name] = runs[(len(runs) - 1) // 2]
    if len(sides) == 2:
        result["m2r_over_trl_time"] = statistics.median(r["m2r_over_trl_time"] for r in result["rounds"])
        result["same_tokens"] = all(r["same_tokens"] for r in result["rounds"])
    out = ROOT / "benchmarks" / "results" / f"grpo_throughput-{args.device}-{args.model}-G{args.G}-img{args.images}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
