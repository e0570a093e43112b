"""m2r.dist without processes: the file-based gather as rank 0 and rank 1 see it, stale parts,
a failing rank, and the rank read from each launcher's environment."""

from __future__ import annotations

import pytest

from m2r import dist


@pytest.fixture
def env(monkeypatch, tmp_path):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_STEP_ID",
                "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("M2R_RUN_ID", "run-a")
    monkeypatch.setenv("M2R_STEP_MARKS", str(tmp_path / "marks"))
    (tmp_path / "marks").mkdir()
    return monkeypatch


def test_gather_reads_each_part_once_and_reports_a_failed_rank(env, tmp_path):
    assert dist.gather_rows(tmp_path, "x", [{"i": 1}], rank=1, world=2) is None
    assert dist.gather_rows(tmp_path, "x", [{"i": 0}], rank=0, world=2) == [{"i": 0}, {"i": 1}]
    # a second gather with the same run id does not take rank 1's old part for a new one
    with pytest.raises(TimeoutError):
        dist.gather_rows(tmp_path, "x", [{"i": 0}], rank=0, world=2, timeout_s=1)
    dist.report_failure(1, "difficulty", ValueError("out of memory"))
    with pytest.raises(RuntimeError, match="rank 1 failed.*difficulty: ValueError: out of memory"):
        dist.gather_rows(tmp_path, "x", [{"i": 0}], rank=0, world=2, timeout_s=30)
    env.setenv("M2R_RUN_ID", "run-b")  # another run's failure is not this run's
    with pytest.raises(TimeoutError):
        dist.gather_rows(tmp_path, "y", [], rank=0, world=2, timeout_s=1)


def test_rank_world_from_each_launcher(env):
    assert dist.rank_world() == (0, 1)
    env.setenv("SLURM_PROCID", "5"), env.setenv("SLURM_NTASKS", "8")
    assert dist.rank_world() == (5, 8)
    env.setenv("LOCAL_RANK", "1"), env.setenv("WORLD_SIZE", "2")  # a rank Lightning spawned on one node
    assert dist.rank_world() == (1, 2)
    env.setenv("RANK", "3"), env.setenv("WORLD_SIZE", "4")  # torchrun
    assert dist.rank_world() == (3, 4)
    env.delenv("M2R_RUN_ID")
    env.setenv("TORCHELASTIC_RUN_ID", "none")  # plain torchrun: not an id shared by one job
    env.setenv("SLURM_JOB_ID", "77")
    assert dist.run_id(3) == "slurm-77-batch-0"
    env.setenv("SLURM_STEP_ID", "1")  # a second srun in the same batch script: not the first one's run
    assert dist.run_id(3) == "slurm-77-1-0"
    # torchrun inside srun, with --rdzv-id=$SLURM_JOB_ID in every step: the step still tells them apart
    env.setenv("TORCHELASTIC_RUN_ID", "77")
    first = dist.run_id(3)
    env.setenv("SLURM_STEP_ID", "2")
    assert dist.run_id(3) != first and dist.run_id(3).startswith("slurm-77-2-0")
    env.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun restarted the workers: not the failed attempt's markers
    assert dist.run_id(3) == "slurm-77-2-0-77-1"
    env.setenv("TORCHELASTIC_RUN_ID", "f00d")  # a second `torchrun --standalone` in the same step: a fresh rendezvous id
    assert dist.run_id(3) == "slurm-77-2-0-f00d-1"
    env.delenv("SLURM_JOB_ID")
    assert dist.run_id(3) == "f00d-1"


def test_my_batches_are_the_one_rank_batches():
    items = list(range(10))
    whole = [b for _, b in dist.my_batches(items, 3, 0, 1)]
    split = sorted(dist.my_batches(items, 3, 0, 2) + dist.my_batches(items, 3, 1, 2))
    assert [b for _, b in split] == whole
