"""GPU acceptance check of issue 9: on one GPU, SFT then GRPO for 3 steps each with the shape-real
Qwen2.5-VL-3B (random weights, real dimensions) under the default GPU precision (bf16-mixed, fp32
masters), DeepSpeed ZeRO-2, ZeRO-3 and FSDP2; GRPO with beta > 0 so the reference model runs.
Asserts finite losses and moved parameters; writes peak memory and seconds per step into
benchmarks/README.md (between the gpu_check markers). Run: `bash benchmarks/gpu_check.sh`."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["auto", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp"]
MODEL = os.environ.get("M2R_GPU_MODEL", "qwen2_5_vl_3b_random")
STAGE_TIMEOUT_S = int(os.environ.get("M2R_GPU_STAGE_TIMEOUT_S", "400"))
START, END = "<!-- gpu_check -->", "<!-- /gpu_check -->"


def run(strategy: str, out: Path) -> dict:
    run_dir = out / strategy
    common = [f"model={MODEL}", "trainer=gpu", "trainer.devices=1", f"strategy={strategy}", f"paths.run_dir={run_dir}", f"hydra.run.dir={run_dir}",
              "data.train_per_task=4", "data.val_per_task=1", "data.rl_per_task=4", "data.test_per_task=1", "data.samples_per_shard=2",
              "data.batch_size=4", "data.max_length=1024", "quality.enabled=false", "trainer.val_check_interval=1000", "trainer.limit_val_batches=0",
              "trainer.enable_progress_bar=false", "logger=csv", "model.max_pixels=200704",
              "callbacks=m2", "algo.beta=0.01", "callbacks.kl_annealing.beta_min=0.01",
              "grpo.prompts_per_step=2", "algo.G=4", "grpo.module.max_new_tokens=64", "grpo.module.micro_batch_size=4", "callbacks.checkpoint=null"]  # no 45 GB optimizer checkpoints of a 3B model
    row = {"strategy": strategy}
    env = {**os.environ, "M2R_NO_PROGRESS": "1", "PYTHONPATH": f"{ROOT / 'benchmarks'}:{os.environ.get('PYTHONPATH', '')}"}
    for stage in ("sft", "grpo"):
        probe = run_dir / f"probe_{stage}.json"
        cmd = [sys.executable, "run.py", f"stage={stage}", *common, f"{stage}.max_steps=3", "+callbacks.gpu_probe._target_=gpu_probe.GPUProbe",
               f"+callbacks.gpu_probe.path={probe}", "grpo.init=scratch"]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=STAGE_TIMEOUT_S)
            rc, log = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:  # a hang (e.g. ranks waiting on each other) is a result too
            text = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr)]
            rc, log = "timeout", f"{text[0]}{text[1]}\ntimed out after {STAGE_TIMEOUT_S} s"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / f"{stage}.log").write_text(log)
        print(f"[gpu_check] {strategy}/{stage}: rc={rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0 or not probe.exists():
            row[stage] = {"error": log[-1500:]}
            continue
        r = json.loads(probe.read_text())
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        r["ok"] = r["steps"] == 3 and all(math.isfinite(v) for v in r["loss"].values()) and r["loss"] != {} and max(r["moved"]) > 0
        row[stage] = r
        for big in ("sft/hf", "grpo/hf", "sft/checkpoints", "grpo/checkpoints"):  # fp32 3B exports are 15 GB each
            shutil.rmtree(run_dir / big, ignore_errors=True)
    return row


def table(rows: list[dict], device: str, kept: list[str]) -> str:
    """The README block: this run's rows, then `kept` (rows of strategies not run now, from an earlier run)."""
    lines = [f"GPU check ({device}; model={MODEL}; `bash benchmarks/gpu_check.sh [strategy ...]`, {time.strftime('%Y-%m-%d')}):", "",
             "| strategy | stage | ok | peak GiB | s/step | loss | error |", "|---|---|---|---:|---:|---|---|"]
    for row in rows:  # the error cell: the log's last non-empty line, with `|` kept out of the table
        for stage in ("sft", "grpo"):
            r = row[stage]
            if "error" in r:
                lines.append(f"| {row['strategy']} | {stage} | no | | | | {([ln for ln in r['error'].splitlines() if ln.strip()] or [''])[-1][:160].replace('|', '/')} |")
            else:
                loss = ", ".join(f"{k}={v:.4g}" for k, v in r["loss"].items())
                lines.append(f"| {row['strategy']} | {stage} | {'yes' if r['ok'] else 'NO'} | {r['peak_mem_gib']:.1f} | {r['s_per_step']:.2f} | {loss} | |")
    return "\n".join(lines + kept)


def old_rows(body: str, skip: set[str]) -> list[str]:
    """Table rows already in the README block whose strategy is not in `skip` (so runs of a few strategies add up)."""
    if START not in body:
        return []
    block = body[body.index(START): body.index(END)]
    rows = [ln for ln in block.splitlines() if ln.startswith("| ") and not ln.startswith("| strategy")]
    return [ln for ln in rows if ln.split("|")[1].strip() not in skip]


def write_readme(rows: list[dict], device: str) -> str:
    readme = ROOT / "benchmarks" / "README.md"
    body = readme.read_text()
    text = table(rows, device, old_rows(body, {r["strategy"] for r in rows}))
    block = f"{START}\n{text}\n{END}"
    body = body[: body.index(START)] + block + body[body.index(END) + len(END):] if START in body else body.rstrip() + "\n\n" + block + "\n"
    readme.write_text(body)
    return text


def main() -> int:
    import torch

    out = Path(os.environ.get("OUT", ROOT / "outputs")) / "gpu_check"
    strategies = sys.argv[1:] or STRATEGIES
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        sys.exit(f"gpu_check: unknown strategy {unknown}; choose from {STRATEGIES}")
    rows = []
    for s in strategies:  # the README is rewritten after each strategy, so a cut-off run keeps what it measured
        rows.append(run(s, out))
        text = write_readme(rows, torch.cuda.get_device_name(0))
        (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0 if all(row[s].get("ok") for row in rows for s in ("sft", "grpo")) else 1


if __name__ == "__main__":
    sys.exit(main())
