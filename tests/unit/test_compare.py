"""m2r.compare on a hand-made multirun: 2 arms x 3 seeds with known accuracies, one crashed job, a
`shared/` folder the SFT evaluations of one arm link into, and the numbers worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from m2r.compare import compare, main

A, B = "reward.ednm.lam=1", "reward.ednm.lam=5"
# (job, arm override, seed, task/spatial/count after RL, after SFT, task/general/chart after RL, after SFT)
JOBS = [(0, A, 0, 0.5, 0.45, 0.2, 0.1), (1, A, 1, 0.6, 0.40, 0.2, 0.1), (2, A, 2, 0.7, 0.35, 0.2, 0.1),
        (3, B, 0, 0.7, 0.6, 0.3, 0.3), (4, B, 1, 0.8, 0.6, 0.4, 0.3), (5, B, 2, 0.75, 0.6, 0.5, 0.3)]


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def _metrics(count: float, chart: float) -> dict:
    return {"task/spatial/count": count, "task/general/chart": chart, "spatial": count, "general": chart, "video": None,
            "overall": (count + chart) / 2, "score": (count + chart) / 2, "type/number": count, "type/choice": chart, "seconds": 3.0,
            "blind/spatial/count": 0.4 + count / 10, "blind/general/chart": 0.2}  # the blind baseline moves with the held-out rows, i.e. the seed


def _hydra(job: Path, arm: str, seed: int) -> None:
    overrides = [arm, "curriculum=random", "grpo.max_steps=6", f"seed={seed}", f"paths.cache_dir=/tmp/cache{job.name}", "trainer.enable_progress_bar=False"]
    _write(job / ".hydra" / "overrides.yaml", yaml.safe_dump(overrides))
    _write(job / ".hydra" / "config.yaml", yaml.safe_dump({"seed": seed, "reward": {"ednm": {"lam": int(arm[-1])}}}))


def make_multirun(root: Path, jobs=JOBS, crashed: bool = True) -> Path:
    for n, arm, seed, count, count0, chart, chart0 in jobs:
        job = root / str(n)
        _hydra(job, arm, seed)
        _write(job / "eval" / "heldout_grpo" / "metrics.json", _metrics(count, chart))
        if arm == B:  # a shared step: the SFT evaluation lives in shared/ and the job folder links to it
            target = root / "shared" / "eval" / f"sft{seed}"
            _write(target / "metrics.json", _metrics(count0, chart0))
            (job / "eval" / "heldout_sft").symlink_to(target, target_is_directory=True)
        else:
            _write(job / "eval" / "heldout_sft" / "metrics.json", _metrics(count0, chart0))
        rows = [{"step": s, "train/reward": 0.1 * s + 0.01 * seed, "time": s} for s in range(1, 7)] + [{"step": 7, "time": 7.0}]
        _write(job / "grpo" / "history.json", rows)
        _write(job / "timings.json", [{"stage": "pipeline", "steps": {"sft": 100.0, "grpo": 100.0}},
                                      {"stage": "pipeline", "steps": {"sft": 1.0, "grpo": 30.0 + 10 * seed}}])
    if crashed:  # job 6 died before any evaluation: only its .hydra folder
        _hydra(root / "6", B, 3)
    _write(root / "multirun.yaml", "hydra: {}\n")
    return root


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = make_multirun(tmp_path_factory.mktemp("sweep"))
    return compare(root), root


def test_arms_seeds_and_the_common_override(result):
    res, root = result
    assert list(res["arms"]) == [A, B]  # seed, paths.* and the progress bar are not the arm; curriculum/max_steps factored out
    assert res["common"] == ["curriculum=random", "grpo.max_steps=6"]
    assert res["arms"][A]["seeds"] == [0, 1, 2] and res["arms"][B]["seeds"] == [0, 1, 2, 3]
    md = (root / "compare" / "compare.md").read_text()
    assert "common: `curriculum=random grpo.max_steps=6`" in md
    assert f"| `{A}` | `{B}` |" in md and "grpo.max_steps=6 reward.ednm" not in md


def test_mean_and_t_interval_by_hand(result):
    res, root = result
    s = res["metrics"]["heldout_grpo"][A]["task/spatial/count"]
    half = 4.303 * 0.1 / math.sqrt(3)  # sd of 0.5, 0.6, 0.7 is 0.1
    assert s["mean"] == pytest.approx(0.6) and s["half"] == pytest.approx(half) and s["n"] == 3
    assert (s["lo"], s["hi"]) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    assert s["seeds"] == [0, 1, 2] and s["values"] == [0.5, 0.6, 0.7]
    b = res["metrics"]["heldout_grpo"][B]["task/spatial/count"]
    assert b["mean"] == pytest.approx(0.75) and b["half"] == pytest.approx(4.303 * 0.05 / math.sqrt(3))
    md = (root / "compare" / "compare.md").read_text()
    assert "| spatial/count | 60.0 ± 24.8 | 75.0 ± 12.4 |" in md
    assert "| general/chart | 20.0 ± 0.0 | 40.0 ± 24.8 |" in md
    assert "| **overall** | 40.0 ± 12.4 | 57.5 ± 16.4 |" in md  # (count + chart) / 2 per seed
    assert "No data in any arm: video" in md and "**video**" not in md  # video is null in every metrics.json


def test_gain_is_paired_by_seed_and_reads_through_links(result):
    res, root = result
    g = res["metrics"]["gain"][A]["task/spatial/count"]  # 0.5-0.45, 0.6-0.40, 0.7-0.35 = 0.05, 0.20, 0.35
    assert g["values"] == pytest.approx([0.05, 0.2, 0.35]) and g["half"] == pytest.approx(4.303 * 0.15 / math.sqrt(3))
    assert res["metrics"]["heldout_sft"][B]["task/spatial/count"]["values"] == [0.6, 0.6, 0.6]  # from shared/ via the links
    assert res["metrics"]["gain"][B]["general"]["values"] == pytest.approx([0.0, 0.1, 0.2])
    md = (root / "compare" / "compare.md").read_text()
    assert "| **spatial** | +20.0 ± 37.3 | +15.0 ± 12.4 |" in md  # the family table of the gain, always written


def test_answer_type_rows_follow_the_families(result):
    res, root = result
    n = res["metrics"]["heldout_grpo"][B]["type/number"]  # metrics.json's type/number: 0.7, 0.8, 0.75
    assert n["values"] == [0.7, 0.8, 0.75] and n["mean"] == pytest.approx(0.75)
    assert res["metrics"]["gain"][A]["type/choice"]["values"] == pytest.approx([0.1, 0.1, 0.1])  # paired like the tasks
    md = (root / "compare" / "compare.md").read_text()
    main = md.split("## Family means")[0]
    assert main.index("| **overall** |") < main.index("| *choice answers* |") < main.index("| *number answers* |")
    assert "| *number answers* | 60.0 ± 24.8 | 75.0 ± 12.4 |" in main


def test_the_crashed_job_is_listed_and_not_counted(result):
    res, root = result
    assert res["n"]["heldout_grpo"] == {A: 3, B: 3} and res["metrics"]["heldout_grpo"][B]["spatial"]["seeds"] == [0, 1, 2]
    assert res["curves"][B]["seeds"] == 3 and res["arms"][B]["wall_s"]["n"] == 3
    [bad] = res["incomplete"]
    assert (bad["job"], bad["arm"], bad["seed"], bad["used_in"]) == ("6", B, 3, [])
    assert "eval/heldout_grpo/metrics.json missing" in bad["missing"] and "grpo/history.json missing" in bad["missing"]
    md = (root / "compare" / "compare.md").read_text()
    incomplete = md.split("## Incomplete jobs")[1]
    assert f"| 6 | `{B}` | 3 |" in incomplete and "eval/heldout_sft/metrics.json missing" in incomplete
    assert "7 jobs, 6 complete, 2 arms" in md and "shared" not in res["arms"]


def test_curves_wall_time_plots_and_json(result):
    res, root = result
    c = res["curves"][A]  # seed s: reward 0.1 * step + 0.01 * s; step 7 has no train/reward
    assert c["step"] == [1, 2, 3, 4, 5, 6] and c["n"] == [3] * 6
    assert c["mean"][2] == pytest.approx(0.21) and (c["min"][2], c["max"][2]) == (pytest.approx(0.2), pytest.approx(0.22))  # 5-step average of steps 1..3
    assert res["arms"][A]["wall_s"] == {"mean": 41.0, "min": 31.0, "max": 51.0, "n": 3}  # the last timings entry only
    out = root / "compare"
    for png in ("heldout_per_arm.png", "reward_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 5000
    saved = json.loads((out / "compare.json").read_text())
    assert saved["metrics"]["heldout_grpo"][A]["task/spatial/count"]["mean"] == pytest.approx(0.6)


def test_one_seed_has_no_interval(tmp_path):
    res = compare(make_multirun(tmp_path, JOBS[:1] + JOBS[3:4], crashed=False))
    s = res["metrics"]["heldout_grpo"][A]["task/spatial/count"]
    assert (s["mean"], s["n"], s["half"], s["lo"], s["hi"]) == (0.5, 1, None, None, None)
    assert "| spatial/count | 50.0 (n=1) | 70.0 (n=1) |" in (tmp_path / "compare" / "compare.md").read_text()


def test_arm_keys_and_the_cli(tmp_path, capsys):
    root = make_multirun(tmp_path / "sweep")
    res = compare(root, tmp_path / "by_key", arm_keys=["curriculum"])  # one arm: lam ignored, so each seed twice
    assert list(res["arms"]) == ["(base)"] and res["common"] == ["curriculum=random"] and res["n"]["heldout_grpo"]["(base)"] == 6
    assert "seed 0 in jobs 0, 3" in (tmp_path / "by_key" / "compare.md").read_text()
    assert main([str(root), "--out", str(tmp_path / "cli"), "--metric", "gain", "--smooth", "1"]) == 0
    md = (tmp_path / "cli" / "compare.md").read_text()
    assert "## gain from RL" in md and "| spatial/count | +20.0 ± 37.3 | +15.0 ± 12.4 |" in md
    assert "+20.0 ± 37.3" in capsys.readouterr().out  # the rich table on the console


def test_a_folder_without_jobs_says_what_it_expected(tmp_path, capsys):
    (tmp_path / "shared").mkdir()
    with pytest.raises(ValueError, match=r"holds no job folders: expected <dir>/<N>/\.hydra/overrides\.yaml.*python run\.py -m"):
        compare(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        compare(tmp_path / "nope")
    assert main([str(tmp_path)]) == 2 and "<N>/.hydra/overrides.yaml" in capsys.readouterr().err


def test_blind_is_per_arm_and_counted_once_per_seed(result, tmp_path):
    res, root = result
    # from heldout_sft: blind spatial = 0.4 + count0 / 10, so A's seeds give 0.445, 0.44, 0.435 and B's 0.46 (a job per seed)
    a, b = res["blind"][A]["spatial"], res["blind"][B]["spatial"]
    assert a["seeds"] == [0, 1, 2] and a["values"] == pytest.approx([0.445, 0.44, 0.435]) and a["mean"] == pytest.approx(0.44)
    assert b["values"] == pytest.approx([0.46] * 3)  # B's crashed job (seed 3) has no metrics: not counted
    assert res["blind"][A]["overall"]["mean"] == pytest.approx((0.44 + 0.2) / 2) and "video" not in res["blind"][A]
    md = (root / "compare" / "compare.md").read_text()
    assert f"`{A}` spatial 44.0 ± 1.2, general 20.0 ± 0.0, overall 32.0 ± 0.6; `{B}` spatial 46.0 ± 0.0" in md
    gain = compare(root, out=tmp_path / "gain", metric="gain")
    assert gain["blind"] == res["blind"] and "`blind`" not in (tmp_path / "gain" / "compare.md").read_text()  # no bar for a difference
    # two jobs of one seed in one arm count once; arms with equal rows get one line
    same = [(0, A, 0, 0.5, 0.4, 0.2, 0.1), (1, A, 0, 0.6, 0.4, 0.2, 0.1), (2, B, 0, 0.7, 0.4, 0.3, 0.3)]
    res2 = compare(make_multirun(tmp_path / "same", same, crashed=False))
    assert res2["blind"][A]["spatial"]["n"] == 1 and res2["blind"][A]["spatial"]["mean"] == pytest.approx(0.44)
    assert "spatial 44.0 (n=1), general 20.0 (n=1), overall 32.0 (n=1), in every arm." in (tmp_path / "same" / "compare" / "compare.md").read_text()
