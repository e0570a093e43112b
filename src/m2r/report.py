"""The run report: `<run>/report.md` and `<run>/plots/*.png`, from what the steps wrote.

Plots: the reward per task over GRPO steps (batches are single-task, so each step's reward
belongs to one task), beta and KL over steps, the advantage weights (Eq. 6) over steps, the
difficulty of the batches the model saw over steps (the curriculum made visible), and held-out
accuracy per task after SFT and after RL. Tables: wall time per step, the quality filter's
counts, the curriculum, the before/after accuracy per task. A missing artefact leaves its
section out and says so; the report never invents a number.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _save(fig, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _plots(run: Path, history: list[dict], batches: list[dict], before: dict | None, after: dict | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run / "plots"
    out.mkdir(exist_ok=True)
    made = []
    reward = {r["step"]: r.get("train/reward") for r in history}
    if batches:
        tasks = sorted({b["task"] for b in batches})
        cmap = plt.get_cmap("tab20")
        fig, ax = plt.subplots(figsize=(10, 4.5))
        for i, t in enumerate(tasks):
            pts = [(b["step"], reward[b["step"]]) for b in batches if b["task"] == t and reward.get(b["step"]) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1, color=cmap(i % 20), label=t)
        ax.set(xlabel="GRPO step", ylabel="mean reward of the step's batch", title="Reward per task (single-task batches)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        made.append(_save(fig, out, "reward_per_task.png"))

        fig, ax = plt.subplots(figsize=(10, 4.5))
        for i, t in enumerate(tasks):  # per task: its samples (dots) and its batch means (line), easy to hard within the task
            mine = [b for b in batches if b["task"] == t and b["difficulty"] and None not in b["difficulty"]]
            if not mine:
                continue
            ax.scatter([b["step"] for b in mine for _ in b["difficulty"]], [d for b in mine for d in b["difficulty"]], s=8, alpha=0.35, color=cmap(i % 20))
            ax.plot([b["step"] for b in mine], [sum(b["difficulty"]) / len(b["difficulty"]) for b in mine], marker="o", ms=4, lw=1.2, color=cmap(i % 20), label=t)
        ax.set(xlabel="GRPO step", ylabel="difficulty d = 1 - mean accuracy", title="Difficulty of the samples each step trained on (lines: a task's batch means)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        made.append(_save(fig, out, "batch_difficulty.png"))
    if history:
        fig, ax1 = plt.subplots(figsize=(8, 4))
        ax1.plot(*_series(history, "train/kl_coef"), color="tab:blue", label="beta (KL coefficient)")
        ax1.set(xlabel="GRPO step", ylabel="beta")
        ax2 = ax1.twinx()
        ax2.plot(*_series(history, "train/kl"), color="tab:red", label="KL to the reference (k3)")
        ax2.set_ylabel("KL")
        fig.legend(loc="upper right", fontsize=8)
        ax1.set_title("Cosine-annealed beta (Eq. 7) and the KL it weighs")
        made.append(_save(fig, out, "beta_kl.png"))

        fig, ax = plt.subplots(figsize=(8, 4))
        steps, mean = _series(history, "train/adv_weight_mean")
        _, std = _series(history, "train/adv_weight_std")
        ax.plot(steps, mean, label="mean w_q over the step's rollouts")
        if len(std) == len(mean):
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2, label="+- std")
        ax.set(xlabel="GRPO step", ylabel="w_q = sigma p (1 - p)", title="Dynamic advantage weights (Eq. 6)")
        ax.legend(fontsize=8)
        made.append(_save(fig, out, "adv_weights.png"))
    if before or after:
        tasks = sorted({k[5:] for m in (before, after) if m for k in m if k.startswith("task/")})
        x = range(len(tasks))
        fig, ax = plt.subplots(figsize=(max(10, 0.55 * len(tasks)), 4.5))
        for off, (m, label) in zip((-0.2, 0.2), ((before, "after SFT"), (after, "after RL"))):
            if m:
                ax.bar([i + off for i in x], [100 * m.get(f"task/{t}", 0.0) for t in tasks], width=0.4, label=label)
        ax.set_xticks(list(x), tasks, rotation=40, ha="right", fontsize=8)
        ax.set(ylabel="held-out accuracy (%)", title="Held-out accuracy per task, before and after RL")
        ax.legend()
        made.append(_save(fig, out, "heldout_accuracy.png"))
    return made


def write_report(run: str | Path) -> dict[str, Any]:
    from m2r.data.curriculum import read_batches

    run = Path(run)
    history = _load(run / "grpo" / "history.json") or []
    batches = read_batches(run / "grpo" / "batches.jsonl") if (run / "grpo" / "batches.jsonl").exists() else []
    before, after = _load(run / "eval" / "heldout_sft" / "metrics.json"), _load(run / "eval" / "heldout_grpo" / "metrics.json")
    plots = _plots(run, history, batches, before, after)
    L = [f"# m2r run report\n\nRun directory: `{run}`. Written by the `report` step of `stage=pipeline` from the files named in each section.\n"]

    timings = _load(run / "timings.json") or []
    if timings:
        last: dict[str, float] = {}
        for inv in timings:  # the latest invocation in which each step ran
            last.update(inv["steps"])
        L.append("## Wall time per step (`timings.json`; a step skipped as complete shows its skip time)\n\n| step | seconds |\n|:---|---:|")
        L += [f"| {k} | {v:.1f} |" for k, v in last.items()]
        L.append(f"| **total** | {sum(last.values()):.1f} |\n")

    q = _load(run / "quality" / "summary.json")
    if q and "kept" in q:
        L.append(f"## Quality filter (`quality/summary.json`)\n\nScorer: {q['scorer']}, threshold {q['threshold']}. Kept {q['kept']} of {q['in']} SFT traces, dropped {q['dropped']}.\n")
        L.append("| trace | count | dropped |\n|:---|---:|---:|")
        L += [f"| {k} | {v['n']} | {v['dropped']} |" for k, v in sorted(q["by_noise"].items())]
        L.append("\n`clean` are the generator's traces; the other rows are the failures the embedded data injected (`data.noisy_trace_ratio`).\n")

    pc = _load(run / "perceive" / "summary.json")
    sft_inputs = (_load(run / "sft" / "key.json") or {}).get("config", {}).get("inputs", {})
    if pc and "steps" in pc and "perceive" in sft_inputs:  # a warm-up this run's SFT started from (not one left from an earlier setting)
        L.append(f"## Perception warm-up (`perceive/summary.json`)\n\n{pc['steps']} steps on fresh scenes, every object listed left to right with its column "
                 f"and row; train loss {_fmt(pc.get('loss_first'))} -> {_fmt(pc.get('loss_last'))}; on the held-out scenes loss {_fmt(pc.get('val_loss'))}, "
                 f"token accuracy {_fmt(pc.get('val_token_acc_first'))} -> {_fmt(pc.get('val_token_acc_last'))}. SFT starts from its export.\n")
        if pc.get("reading_acc") is not None and pc.get("reading_acc_swapped") is not None:
            L.append(f"The look test ({pc['readings']} column and row digits of the held-out scenes, teacher-forced): {_fmt(pc['reading_acc'], True)}% "
                     f"right, {_fmt(pc['reading_acc_swapped'], True)}% with each image swapped for another scene's. A model that reads its "
                     "images loses accuracy when they are swapped; one that learnt only the listing's priors does not.\n")
            sft_sum = _load(run / "sft" / "summary.json") or {}
            rehearsal = ((_load(run / "sft" / "key.json") or {}).get("config", {}).get("sft") or {}).get("rehearsal")
            looks = [("after the warm-up", pc), (f"after SFT (sft.rehearsal={rehearsal or 0})", sft_sum.get("look") or {})]
            failed = [f"{name}: the look test failed ({lk['look_error']})" for name, lk in looks if lk.get("look_error")]
            looks = [(name, lk) for name, lk in looks if lk.get("reading_acc") is not None]
            cols = [("reading_acc_column", "columns"), ("reading_acc_row", "rows"), ("naming_acc_colour", "colour words"), ("naming_acc_shape", "shape words")]
            L += ["| model | " + " | ".join(f"{c} (own / swapped)" for _, c in cols) + " |", "|:---|" + "---:|" * len(cols)]
            L += [f"| {name} | " + " | ".join(f"{_fmt(lk.get(k), True)} / {_fmt(lk.get(k + '_swapped'), True)}" for k, _ in cols) + " |" for name, lk in looks]
            L.append("\n% right, teacher-forced, on the same held-out scenes; with swapped images a reader falls to the listing's prior.\n")
            L += [f"{f}.\n" for f in failed]

    sft = _load(run / "sft" / "summary.json")
    if sft:
        L.append(f"## Cold-start SFT (`sft/summary.json`)\n\n{sft['steps']} steps; train loss {_fmt(sft.get('loss_first'))} -> {_fmt(sft.get('loss_last'))} "
                 f"(mean of the last tenth {_fmt(sft.get('loss_last_mean'))}); val loss {_fmt(sft.get('val_loss'))}.\n")

    d = _load(run / "score" / "summary.json")
    cm = _load(run / "curriculum" / "rl" / "manifest.json")
    if d:
        L.append(f"## Difficulty and curriculum (`score/`, `curriculum/rl/manifest.json`)\n\n{d['in_file']} RL prompts scored with N={d['N']} responses of `{d['model']}`: "
                 f"mean difficulty {_fmt(d['mean'])}, {d['solved']} always solved (d <= {d.get('tol', 0)}), {d['unsolved']} never solved (d >= 1 - {d.get('tol', 0)}).\n")
    if cm:
        L.append(f"Curriculum: order `{cm['curriculum']['order']}`, {cm['count']} prompts kept.\n\n| task | in | d=0 dropped | d=1 dropped | kept | difficulty range |\n|:---|---:|---:|---:|---:|:---:|")
        for t, st in cm["stats"].items():
            shards = cm["tasks"].get(t, {}).get("shards", [])
            rng = f"{shards[0]['difficulty'][0]:.2f} .. {shards[-1]['difficulty'][1]:.2f}" if shards and cm["curriculum"]["order"] == "ordered" else "-"
            L.append(f"| {t} | {st['in']} | {st['solved']} | {st['unsolved']} | {st['kept']} | {rng} |")
        L.append("")

    g = _load(run / "grpo" / "summary.json")
    if g:
        L.append(f"## GRPO (`grpo/summary.json`, `grpo/history.json`, `grpo/batches.jsonl`)\n\n{g['steps']} steps from `{g['init']}`, {_fmt(g.get('step_time_mean'))} s/step; "
                 f"reward {_fmt(g.get('reward_first_mean'))} -> {_fmt(g.get('reward_last_mean'))} and accuracy {_fmt(g.get('acc_first_mean'))} -> {_fmt(g.get('acc_last_mean'))} "
                 "(means of the first and last tenth of the steps; each step is one task's batch, so these mix tasks).\n")

    if before or after:
        L.append("## Held-out accuracy per task (`eval/heldout_sft`, `eval/heldout_grpo`; %, greedy)\n\n"
                 "Multiple choice by letter, general numbers exact, numeric spatial answers by mean relative accuracy (VSI-Bench's metric, not the EDNM training reward).\n")
        blind = {k.removeprefix("blind/"): v for m in (before, after) if m for k, v in m.items() if k.startswith("blind/")}
        if blind:
            L.append("`blind` is what a model that knows only the task and whether a row has options could score: one constant answer per answer type, "
                     "picked on these rows (`m2r.eval.embedded.blind_baseline`). Beating it is necessary for having learnt a task, not sufficient.\n")
        L.append("| task | blind | after SFT | after RL | change |\n|:---|---:|---:|---:|---:|")
        keys = sorted({k for m in (before, after) if m for k in m if k.startswith("task/")}) + [k for k in ("spatial", "video", "general") if any(m and m.get(k) is not None for m in (before, after))] + ["overall"]
        prefixes = {"spatial": "spatial/", "video": "spatial/video/", "general": "general/", "overall": ""}
        for k in keys:
            b, a = (before or {}).get(k), (after or {}).get(k)
            ch = f"{100 * (a - b):+.1f}" if a is not None and b is not None else "-"
            if k.startswith("task/"):
                bl = blind.get(k.removeprefix("task/"))
            else:
                vals = [v for t, v in blind.items() if t.startswith(prefixes[k])]
                bl = sum(vals) / len(vals) if vals else None
            L.append(f"| {k.removeprefix('task/')} | {_fmt(bl, True)} | {_fmt(b, True)} | {_fmt(a, True)} | {ch} |")
        L.append("")
    if plots:
        L.append("## Plots\n")
        L += [f"![{p}](plots/{p})" for p in plots]
    (run / "report.md").write_text("\n".join(L) + "\n")
    log.info("report: %s (%d plots)", run / "report.md", len(plots))
    return {"report": str(run / "report.md"), "plots": plots}
