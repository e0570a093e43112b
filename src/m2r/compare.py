"""Compare the arms of a multirun: one markdown table, `compare.json` and two plots per sweep.

    python -m m2r.compare multirun/<date>/<time> [--out DIR] [--metric heldout_grpo|heldout_sft|gain]
                          [--arm-keys k1,k2] [--smooth 5]

writes `<out>/compare.md`, `compare.json`, `heldout_per_arm.png` and `reward_curves.png` (`<out>`
defaults to `<multirun>/compare/`) and prints the main table. How it reads the folder:

1. A job is a folder `<multirun>/<N>/` with `.hydra/overrides.yaml`; anything else (`shared/`,
   `compare/`, `multirun.yaml`) is not a job. Links (shared steps link `eval/heldout_sft` etc. into
   `<multirun>/shared/`) are read through.
2. The arm of a job is its overrides minus the seed and bookkeeping (`paths.*`, `hydra.*`,
   `shared.*`, `trainer.enable_progress_bar`), or with `--arm-keys` only the named keys (a key
   names itself and its sub-keys; a key no override sets is read from `.hydra/config.yaml` when it
   is a scalar there). Overrides every arm shares are printed once as `common:`, not in labels.
3. The seed is `seed` of `.hydra/config.yaml`, else the `seed=` override, else 0.
4. Each section uses every job that has the file it reads, and says how many (`n`): a job without
   `eval/heldout_grpo/metrics.json` is absent from the after-RL table but its SFT numbers still
   count. A job missing any of `.hydra/config.yaml`, the two `metrics.json` and
   `grpo/history.json` is listed under "Incomplete jobs" with what it lacks and where it was still
   used; no number is ever invented for it.

Statistics: per arm and row, the mean over seeds and a 95% confidence interval for the mean,
mean +- t(0.975, n-1) * sd / sqrt(n) with the sample sd (n-1); n=1 gets no interval. `gain` is
after RL minus after SFT per seed, then mean and interval over seeds (a paired difference, so the
seed-to-seed spread both stages share cancels).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

METRICS = {"heldout_grpo": "held-out accuracy after RL", "heldout_sft": "held-out accuracy after SFT (before RL)",
           "gain": "gain from RL (after RL minus after SFT, per seed)"}
FAMILIES = ("spatial", "general", "video", "overall")
BOOKKEEPING = ("paths.", "hydra.", "shared.")  # override prefixes that place or log a job, not what it trains
BOOKKEEPING_KEYS = ("seed", "trainer.enable_progress_bar")
REQUIRED = (".hydra/config.yaml", "eval/heldout_sft/metrics.json", "eval/heldout_grpo/metrics.json", "grpo/history.json")
LAYOUT = ("<dir>/<N>/.hydra/overrides.yaml for N = 0, 1, ... (one folder per job, as `python run.py -m ...` writes under "
          "multirun/<date>/<time>/, e.g. `python run.py -m sweep=ednm`)")
# t(0.975, df) for df = 1..30. Beyond 30 the normal quantile 1.96 (t(0.975, 30) = 2.042, so intervals
# with 32+ seeds come out up to 4% narrower than Student's t would make them).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (1.96 beyond 30)."""
    if df < 1:
        raise ValueError(f"t975(df={df}): degrees of freedom must be >= 1 (an interval needs 2+ seeds)")
    return T975[df - 1] if df <= len(T975) else 1.96


def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean and 95% CI of the mean (Student's t, sample sd): {mean, lo, hi, half, n}; lo/hi/half None for n=1."""
    n, m = len(values), statistics.fmean(values)
    if n < 2:
        return {"mean": m, "lo": None, "hi": None, "half": None, "n": n}
    half = t975(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return {"mean": m, "lo": m - half, "hi": m + half, "half": half, "n": n}


@dataclass
class Job:
    """One job folder: where it is, what arm and seed it is, what it wrote and what it lacks."""

    name: str
    overrides: list[str]
    seed: int
    arm: tuple[str, ...]  # the overrides that make its arm, sorted by key
    files: dict[str, Any]  # "heldout_sft" | "heldout_grpo" -> metrics dict, "history" -> rows, "timings" -> list; None if absent
    missing: list[str]  # REQUIRED files it lacks or cannot parse, with the reason


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _read(path: Path, kind: type) -> tuple[Any, str | None]:
    """(content, None), or (None, why not) for a missing, unparsable or wrongly shaped file."""
    if not path.exists():
        return None, "missing (a broken link)" if path.is_symlink() else "missing"
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError, OSError) as e:
        return None, f"unreadable ({type(e).__name__}: {str(e).splitlines()[0]})"
    return (data, None) if isinstance(data, kind) else (None, f"unreadable (a {type(data).__name__}, expected a {kind.__name__})")


def _select(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def _arm(overrides: list[str], config: dict | None, arm_keys: list[str] | None) -> tuple[str, ...]:
    if arm_keys is None:
        kv = {_key(o): o for o in overrides if _key(o) not in BOOKKEEPING_KEYS and not _key(o).startswith(BOOKKEEPING)}
    else:
        kv = {_key(o): o for o in overrides if any(_key(o) == k or _key(o).startswith(k + ".") for k in arm_keys)}
        for k in arm_keys:  # a key this job left at its default: its composed value, when that is a scalar
            v = _select(config, k)
            if not any(x == k or x.startswith(k + ".") for x in kv) and v is not None and not isinstance(v, (dict, list)):
                kv[k] = f"{k}={v}"
    return tuple(kv[k] for k in sorted(kv))


def _job(path: Path, arm_keys: list[str] | None) -> Job:
    try:
        overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []  # an empty file: no overrides
    except (yaml.YAMLError, OSError) as e:
        overrides = e
    if not isinstance(overrides, list):
        raise ValueError(f"{path}/.hydra/overrides.yaml is not a YAML list of strings (got {overrides!r:.80}); Hydra writes one "
                         "override per line, `- key=value`: fix the file or move the folder out of the multirun")
    overrides = [str(o) for o in overrides]
    files, missing = {}, []
    config, why = _read(path / ".hydra" / "config.yaml", dict)
    if why:
        missing.append(f".hydra/config.yaml {why}")
    for name, rel, kind in (("heldout_sft", "eval/heldout_sft/metrics.json", dict), ("heldout_grpo", "eval/heldout_grpo/metrics.json", dict),
                            ("history", "grpo/history.json", list), ("timings", "timings.json", list)):
        files[name], why = _read(path / rel, kind)
        if why and rel in REQUIRED:
            missing.append(f"{rel} {why}")
    seed = config.get("seed") if config else None
    if not isinstance(seed, int):
        given = [o.split("=", 1)[1] for o in overrides if _key(o) == "seed" and "=" in o]
        seed = int(given[-1]) if given and given[-1].lstrip("-").isdigit() else 0
    return Job(path.name, overrides, seed, _arm(overrides, config, arm_keys), files, missing)


def find_jobs(multirun: Path, arm_keys: list[str] | None = None) -> list[Job]:
    """The job folders of a multirun, in job order; a clear error when there are none."""
    if not multirun.is_dir():
        raise ValueError(f"{multirun} does not exist or is not a folder: pass a Hydra multirun folder, {LAYOUT}")
    found = [p for p in multirun.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()]
    if not found:
        hint = (" It is itself one run (it has .hydra/overrides.yaml): pass the multirun folder above it."
                if (multirun / ".hydra" / "overrides.yaml").is_file() else "")
        raise ValueError(f"{multirun} holds no job folders: expected {LAYOUT}.{hint}")
    found.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    return [_job(p, arm_keys) for p in found]


def _values(job: Job, metric: str) -> dict[str, float] | None:
    """Row -> value of one job for `metric`, rows being `task/*` and the families; None if it lacks the files."""
    after, before = job.files["heldout_grpo"], job.files["heldout_sft"]
    if metric == "gain":
        if after is None or before is None:
            return None
        return {k: after[k] - before[k] for k in after if _is_row(k) and _num(after[k]) and _num(before.get(k))}
    m = job.files[metric]
    return None if m is None else {k: v for k, v in m.items() if _is_row(k) and _num(v)}


def _is_row(key: str) -> bool:
    """A metrics.json key that is a table row: a task, a family mean, or an answer type (`type/number`: every numeric answer)."""
    return key.startswith(("task/", "type/")) or key in FAMILIES


def _table(arms: dict[str, list[Job]], metric: str) -> tuple[dict[str, dict[str, dict]], dict[str, int]]:
    """arm -> row -> {mean, lo, hi, half, n, seeds, jobs, values}, and arm -> number of jobs with the files."""
    table, n = {}, {}
    for label, jobs in arms.items():
        have = [(j, v) for j in sorted(jobs, key=lambda j: j.seed) if (v := _values(j, metric)) is not None]
        n[label], rows = len(have), {}
        for row in sorted({r for _, v in have for r in v}):
            pts = [(j, v[row]) for j, v in have if row in v]
            rows[row] = {**mean_ci([x for _, x in pts]), "seeds": [j.seed for j, _ in pts], "jobs": [j.name for j, _ in pts], "values": [x for _, x in pts]}
        table[label] = rows
    return table, n


def _blind(jobs: list[Job]) -> dict[str, dict]:
    """The `blind` baseline (the best constant answer per task, `m2r.eval.embedded.blind_baseline`) of these jobs per
    family: mean and 95% CI over seeds. It depends on a job's held-out rows, so each seed counts once."""
    by_seed: dict[int, dict[str, float]] = {}
    for j in jobs:
        m = j.files["heldout_sft"] or j.files["heldout_grpo"]
        b = {k.removeprefix("blind/"): v for k, v in (m or {}).items() if k.startswith("blind/") and _num(v)}
        if b:
            by_seed.setdefault(j.seed, b)
    out = {}
    for family, prefix in (("spatial", "spatial/"), ("general", "general/"), ("video", "spatial/video/"), ("overall", "")):
        vals = {s: statistics.fmean(v for t, v in b.items() if t.startswith(prefix)) for s, b in sorted(by_seed.items()) if any(t.startswith(prefix) for t in b)}
        if vals:
            out[family] = {**mean_ci(list(vals.values())), "seeds": list(vals), "values": list(vals.values())}
    return out


def _blind_alike(res: dict) -> bool:
    """Whether every arm has the same `blind` baseline (the same held-out rows): then it is shown once."""
    return len({json.dumps(b, sort_keys=True) for b in res["blind"].values()}) == 1 and len(res["blind"]) == len(res["arms"])


def _row_order(table: dict[str, dict[str, dict]], families_only: bool = False) -> list[str]:
    present = {r for rows in table.values() for r in rows}
    tasks = [] if families_only else sorted(r for r in present if r.startswith("task/"))
    return tasks + [f for f in FAMILIES if f in present] + sorted(r for r in present if r.startswith("type/"))


def _smooth(ys: list[float], w: int) -> list[float]:
    """Trailing moving average over the last `w` points (fewer at the start)."""
    return [statistics.fmean(ys[max(0, i - w + 1): i + 1]) for i in range(len(ys))]


def _curves(arms: dict[str, list[Job]], w: int) -> dict[str, dict[str, list]]:
    """arm -> {step, mean, min, max, n}: each seed's `train/reward` smoothed, then mean and range over seeds per step."""
    out = {}
    for label, jobs in arms.items():
        series = []
        for j in jobs:
            pts = dict(sorted((r["step"], r["train/reward"]) for r in j.files["history"] or []
                              if isinstance(r, dict) and isinstance(r.get("step"), int) and _num(r.get("train/reward"))))
            if pts:
                series.append(dict(zip(pts, _smooth(list(pts.values()), w))))
        if series:
            steps = sorted(set().union(*series))
            per = [[s[t] for s in series if t in s] for t in steps]
            out[label] = {"step": steps, "mean": [statistics.fmean(p) for p in per], "min": [min(p) for p in per],
                          "max": [max(p) for p in per], "n": [len(p) for p in per], "seeds": len(series)}
    return out


def _wall(jobs: list[Job]) -> dict[str, float] | None:
    """Seconds of each job's last `timings.json` entry, summed over its steps: mean, min, max, n over jobs."""
    secs = []
    for j in jobs:
        last = (j.files["timings"] or [None])[-1]
        if isinstance(last, dict) and isinstance(last.get("steps"), dict) and all(_num(v) for v in last["steps"].values()):
            secs.append(sum(last["steps"].values()))
    return {"mean": statistics.fmean(secs), "min": min(secs), "max": max(secs), "n": len(secs)} if secs else None


def _cell(s: dict | None, n_arm: int, signed: bool) -> str:
    """`53.1 ± 4.2` in percent; `53.1 (n=1)` without an interval; `(n=2)` appended where a row has fewer seeds than its arm."""
    if s is None:
        return "-"
    text = f"{100 * s['mean']:{'+' if signed else ''}.1f}"
    text += f" ± {100 * s['half']:.1f}" if s["half"] is not None else " (n=1)"
    return text + (f" (n={s['n']})" if 1 < s["n"] != n_arm else "")


def _row_name(row: str, md: bool = True) -> str:
    if row.startswith("task/"):
        return row.removeprefix("task/")
    if row.startswith("type/"):  # the mean over every held-out row with that answer type (rows, not tasks, weigh equally)
        return f"*{row.removeprefix('type/')} answers*" if md else f"{row.removeprefix('type/')} answers"
    return f"**{row}**" if md else row


def _md_table(table: dict, n: dict[str, int], rows: list[str], metric: str) -> list[str]:
    labels = list(table)
    out = ["| row | " + " | ".join(f"`{a}`" for a in labels) + " |", "|:---|" + "---:|" * len(labels),
           "| seeds (n) | " + " | ".join(str(n[a]) for a in labels) + " |"]
    out += [f"| {_row_name(r)} | " + " | ".join(_cell(table[a].get(r), n[a], metric == "gain") for a in labels) + " |" for r in rows]
    empty = [f for f in FAMILIES if f not in rows]
    return out + ([f"\nNo data in any arm: {', '.join(empty)}."] if empty else [])


def _plot_heldout(table: dict, rows: list[str], metric: str, path: Path) -> None:
    """Grouped bars, one per arm, 95% CI error bars: the families in a narrow left panel, the tasks in a wide right one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    labels = list(table)
    panels = [p for p in ([r for r in rows if r in FAMILIES], [r for r in rows if r.startswith("task/")]) if p]
    width = min(48.0, max(10.0, 0.16 * len(labels) * sum(map(len, panels)) + 3))  # about 0.16 in per bar drawn: 20 tasks x 4 arms stays legible
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 5), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": [len(p) + 0.5 for p in panels]})
    cmap, bw = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20"), 0.8 / len(labels)
    for ax, panel in zip(axes[0], panels):
        for a, label in enumerate(labels):
            if not (pts := [(i, table[label][r]) for i, r in enumerate(panel) if r in table[label]]):
                continue
            ax.bar([i + (a - (len(labels) - 1) / 2) * bw for i, _ in pts], [100 * s["mean"] for _, s in pts], width=bw,
                   yerr=[100 * (s["half"] or 0.0) for _, s in pts], capsize=2, color=cmap(a % cmap.N))
        ax.set_xticks(range(len(panel)), [_row_name(r, md=False) for r in panel], rotation=40, ha="right", fontsize=8)
        if metric == "gain":
            ax.axhline(0, color="black", lw=0.8)
        else:
            ax.set_ylim(0, 105)  # accuracy: whiskers of a wide interval end at the frame rather than past 0 or 100%
    axes[0][0].set_ylabel(f"{METRICS[metric]} (%)", fontsize=8)
    axes[0][-1].legend([Patch(color=cmap(a % cmap.N)) for a in range(len(labels))], labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{METRICS[metric]}: mean over seeds, error bars 95% CI (Student's t; none for n=1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curves(curves: dict, w: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for a, (label, c) in enumerate(curves.items()):
        ax.plot(c["step"], c["mean"], lw=1.5, color=cmap(a % cmap.N), label=f"{label} ({c['seeds']} seeds)")
        ax.fill_between(c["step"], c["min"], c["max"], color=cmap(a % cmap.N), alpha=0.2)
    ax.set(xlabel="GRPO step", ylabel="train/reward",
           title=f"Training reward: mean over seeds of a {w}-step trailing moving average; band = min..max over seeds")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    metric, table, n = res["metric"], res["metrics"][res["metric"]], res["n"][res["metric"]]
    t = Table(title=f"{METRICS[metric]} (%, mean ± 95% CI over seeds)", caption=f"common: {' '.join(res['common'])}" if res["common"] else None)
    t.add_column("row")
    for label in table:
        t.add_column(label, justify="right")
    t.add_row("seeds (n)", *[str(n[a]) for a in table])
    for r in _row_order(table):
        t.add_row(f"[bold]{r}[/bold]" if r in FAMILIES else _row_name(r, md=False), *[_cell(table[a].get(r), n[a], metric == "gain") for a in table])
    if metric != "gain":  # the blind baseline's overall figure, as under compare.md's main table: one row, or one per arm where they differ
        same = _blind_alike(res)
        for a, b in res["blind"].items():
            if "overall" in b:
                t.add_row("blind, overall" if same else f"blind, overall ({a})", *[_cell(b["overall"], b["overall"]["n"], False)] * len(table))
                if same:
                    break
    Console().print(t)


def _markdown(res: dict, jobs: list[Job], arms: dict[str, list[Job]], smooth: int, plots: list[str]) -> str:
    metric, names = res["metric"], {"heldout_grpo": "after RL", "heldout_sft": "after SFT", "gain": "gain"}
    info = res["arms"]
    L = [f"# m2r comparison of `{res['multirun']}`\n",
         f"{len(jobs)} jobs, {sum(not j.missing for j in jobs)} complete, {len(arms)} arms. "
         f"Written by `python -m m2r.compare {res['multirun']} --metric {metric}`; numbers in `compare.json`.\n"]
    L += [f"common: `{' '.join(res['common'])}`\n"] if res["common"] else []
    L += ["| arm | jobs | seeds | complete |", "|:---|---:|:---|---:|"]
    L += [f"| `{a}` | {len(v['jobs'])} | {', '.join(map(str, v['seeds']))} | {v['complete']} |" for a, v in info.items()]
    dup = [f"`{a}`: seed {s} in jobs {', '.join(j.name for j in arms[a] if j.seed == s)}"
           for a in arms for s, c in Counter(j.seed for j in arms[a]).items() if c > 1]
    L += ["", "Seeds that occur twice in an arm (each job counts as one sample; name the arm's keys with `--arm-keys` "
          "if these are different arms): " + "; ".join(dup) + "."] if dup else []

    table = res["metrics"][metric]
    L += [f"\n## {METRICS[metric]} (%; mean ± 95% CI half-width over seeds, Student's t)\n",
          "Rows: held-out tasks, then the family means over tasks (**bold**), then the means over rows by answer type (*italic*). A cell `x (n=1)` has one seed and no interval; "
          "`(n=k)` marks a row with fewer seeds than its arm.\n"]
    L += _md_table(table, res["n"][metric], _row_order(table), metric)
    if (blind := res["blind"]) and metric != "gain":  # a bar for accuracies, not for their differences
        line = lambda b: ", ".join(f"{f} {_cell(c, c['n'], False)}" for f, c in b.items())  # noqa: E731
        same = _blind_alike(res)
        L.append("\n`blind`, the best constant answer per task on the same held-out rows (a bar to beat, "
                 "`m2r.eval.embedded.blind_baseline`): " + (f"{line(next(iter(blind.values())))}, in every arm." if same
                                                           else "; ".join(f"`{a}` {line(b)}" for a, b in blind.items()) + "."))
    L.append("\n## Family means and answer types, all three metrics\n")
    for m in METRICS:
        L += [f"### {names[m]} (`{m}`): {METRICS[m]}\n"]
        rows = _row_order(res["metrics"][m], families_only=True)
        L += (_md_table(res["metrics"][m], res["n"][m], rows, m) if rows else ["No job has the files this metric reads."]) + [""]
    if "heldout_per_arm.png" in plots:
        L.append(f"![held-out per arm](heldout_per_arm.png)\n\n`heldout_per_arm.png`: {METRICS[metric]} per family and task, one bar per arm, 95% CI.\n")

    L.append("## Reward curves\n")
    if "reward_curves.png" in plots:
        L.append(f"`reward_curves.png`: `train/reward` of `grpo/history.json` per GRPO step, each seed smoothed by a {smooth}-step "
                 "trailing moving average, then the mean over seeds (line) and min..max over seeds (band); seeds with a history: "
                 + ", ".join(f"`{a}` {c['seeds']}" for a, c in res["curves"].items()) + ".\n\n![reward curves](reward_curves.png)\n")
    else:
        L.append("No job has `train/reward` in `grpo/history.json`; no plot.\n")

    L.append("## Wall time per arm\n")
    if any(v["wall_s"] for v in info.values()):
        L += ["Seconds of each job's last `timings.json` entry summed over its steps (a step reused from `shared/` or skipped "
              "as complete counts its skip time), over the jobs that have one.\n", "| arm | n | mean s | min s | max s |", "|:---|---:|---:|---:|---:|"]
        L += [f"| `{a}` | {w['n']} | {w['mean']:.1f} | {w['min']:.1f} | {w['max']:.1f} |" if (w := v["wall_s"]) else f"| `{a}` | 0 | - | - | - |"
              for a, v in info.items()]
    else:
        L.append("No job has a `timings.json`.")

    L.append("\n## Incomplete jobs\n")
    if res["incomplete"]:
        L += ["Jobs missing a file; each table above counts a job only where it has the file that table reads.\n",
              "| job | arm | seed | missing | still used in |", "|:---|:---|---:|:---|:---|"]
        L += [f"| {i['job']} | `{i['arm']}` | {i['seed']} | {'; '.join(i['missing'])} | {', '.join(i['used_in']) or 'nothing'} |" for i in res["incomplete"]]
    else:
        L.append("None: every job has `.hydra/config.yaml`, both held-out `metrics.json` and `grpo/history.json`.")
    return "\n".join(L) + "\n"


def compare(multirun: Path, out: Path | None = None, metric: str = "heldout_grpo", arm_keys: list[str] | None = None,
            smooth: int = 5) -> dict[str, Any]:
    """Read a multirun, write `compare.md`, `compare.json` and the plots under `out`, print the main table; return the numbers.

    The result (also `compare.json`): `metrics[m][arm][row]` = {mean, lo, hi, half, n, seeds, jobs, values} for
    each m in METRICS (`metric` picks the main table), rows `task/<name>` and the families; `n[m][arm]` the jobs
    with the files m reads; `arms[arm]` its jobs, seeds and wall time; `curves[arm]` the smoothed reward curve;
    `incomplete` the jobs missing files; `common` the overrides shared by every arm; `blind[arm][family]` the
    best-constant-answer baseline of its held-out rows over seeds. Rows `type/<answer type>` average rows, not tasks.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: choose one of {', '.join(METRICS)}")
    if smooth < 1:
        raise ValueError(f"smooth={smooth}: the moving-average window must be >= 1 step (1 = no smoothing)")
    multirun = Path(multirun)
    jobs = find_jobs(multirun, arm_keys)
    keys = list(dict.fromkeys(j.arm for j in jobs))  # arms in job order: a sweep's own order (lam=1,2,5, not 1,5,2)
    common = [o for o in keys[0] if all(o in k for k in keys)]
    label = {k: " ".join(o for o in k if o not in common) or "(base)" for k in keys}
    arms = {label[k]: [j for j in jobs if j.arm == k] for k in keys}
    tables = {m: _table(arms, m) for m in METRICS}
    curves = _curves(arms, smooth)
    blind = {a: b for a, js in arms.items() if (b := _blind(js))}  # per arm: an arm may change the held-out rows
    used = {"heldout_sft": "after SFT", "heldout_grpo": "after RL", "history": "reward curves", "timings": "wall time"}
    res: dict[str, Any] = {
        "multirun": str(multirun), "metric": metric, "common": common, "smooth": smooth,
        "arms": {a: {"overrides": [o for o in k if o not in common], "jobs": [j.name for j in arms[a]], "seeds": sorted(j.seed for j in arms[a]),
                     "complete": sum(not j.missing for j in arms[a]), "wall_s": _wall(arms[a])} for k, a in label.items()},
        "metrics": {m: t for m, (t, _) in tables.items()}, "n": {m: n for m, (_, n) in tables.items()}, "curves": curves, "blind": blind,
        "incomplete": [{"job": j.name, "arm": label[j.arm], "seed": j.seed, "missing": j.missing,
                        "used_in": [u for f, u in used.items() if j.files[f] is not None]} for j in jobs if j.missing],
    }
    out = Path(out) if out is not None else multirun / "compare"
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if rows := _row_order(res["metrics"][metric]):
        _plot_heldout(res["metrics"][metric], rows, metric, out / "heldout_per_arm.png")
        plots.append("heldout_per_arm.png")
    if curves:
        _plot_curves(curves, smooth, out / "reward_curves.png")
        plots.append("reward_curves.png")
    res.update(out=str(out), plots=plots)
    (out / "compare.md").write_text(_markdown(res, jobs, arms, smooth, plots))
    (out / "compare.json").write_text(json.dumps(res, indent=1))
    _print_table(res)
    log.info("compare: %s (%d jobs, %d arms, %d plots)", out / "compare.md", len(jobs), len(arms), len(plots))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m m2r.compare", description="Compare the arms of a Hydra multirun of m2r runs: "
                                "compare.md, compare.json, heldout_per_arm.png, reward_curves.png.")
    p.add_argument("multirun", type=Path, help="the sweep folder, e.g. multirun/2026-11-23/18-42-48 (holds 0/, 1/, ...)")
    p.add_argument("--out", type=Path, default=None, help="where to write (default: <multirun>/compare)")
    p.add_argument("--metric", choices=list(METRICS), default="heldout_grpo", help="the main table: after RL (default), after SFT, or their per-seed difference")
    p.add_argument("--arm-keys", default=None, help="comma-separated override keys that make the arm, others ignored (e.g. reward.ednm.lam,curriculum)")
    p.add_argument("--smooth", type=int, default=5, help="moving-average window of the reward curves, in steps (default 5)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keys = [k.strip() for k in args.arm_keys.split(",") if k.strip()] if args.arm_keys else None
    try:
        compare(args.multirun, args.out, args.metric, keys, args.smooth)
    except ValueError as e:
        print(f"m2r.compare: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
