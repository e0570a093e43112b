"""An SFT run killed and resumed trains on exactly the samples of an uninterrupted run.

The stream test checks `sample_stream(skip_batches=...)` against the unskipped stream through a
real DataLoader; the end-to-end test runs `stage=sft` through the real config three times
(uninterrupted; crashed after step 3; resumed) and compares the sample ids of every batch.
"""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch
from torch.utils.data import DataLoader

import m2r
from conftest import FAST, compose
from m2r.data.collate import SFTCollator

pytestmark = pytest.mark.slow


def sample_key(sample_id: str) -> int:
    """A sample id as an int, so it rides in the batch as a tensor (and across worker processes)."""
    return zlib.crc32(sample_id.encode())


def id_batches(stream, batch_size: int, num_workers: int, n: int) -> list[list[str]]:
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers, collate_fn=lambda b: [s.id for s, _ in b])
    return list(itertools.islice(loader, n))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skipped_stream_continues_at_the_next_batch(shard_root, num_workers):
    from m2r.data.shards import sample_stream, shard_urls

    urls = shard_urls(shard_root, "train")  # 24 shards of 2 samples: 16 batches of 3 per epoch
    kw = dict(rank=0, world=1, seed=3, shuffle_shards=True, shuffle_buffer=8, repeat=True)
    full = id_batches(sample_stream(urls, **kw), 3, num_workers, 40)  # 2.5 epochs
    for skip in (1, 5, 16, 21):
        resumed = id_batches(sample_stream(urls, **kw, skip_batches=skip, batch_size=3), 3, num_workers, 40 - skip)
        assert resumed == full[skip:], f"skip_batches={skip}"


class IdCollator(SFTCollator):
    """SFTCollator that also puts the batch's sample ids into it (`ids`, popped before the model sees it)."""

    def __call__(self, batch):
        out = super().__call__(batch)
        out["ids"] = torch.tensor([sample_key(s.id) for s, _ in batch])
        return out


def make_recorder(seen: list[tuple[int, list[int]]]):
    import lightning as L

    class BatchIds(L.Callback):
        """Records (optimizer step the batch belongs to, sample ids) of every training batch."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.global_step + 1, batch.pop("ids").tolist()))

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            batch.pop("ids")

    return BatchIds()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_killed_and_resumed_sft_trains_on_the_uninterrupted_samples(tmp_path, cache_dir, monkeypatch, num_workers):
    import m2r.data.datamodule
    import m2r.training

    monkeypatch.setattr(m2r.data.datamodule, "SFTCollator", IdCollator)
    seen: list[tuple[int, list[int]]] = []
    make_trainer = m2r.training.make_trainer
    monkeypatch.setattr(m2r.training, "make_trainer", lambda *a, extra_callbacks=None, **k: make_trainer(*a, extra_callbacks=[*(extra_callbacks or []), make_recorder(seen)], **k))

    # 12 samples in 12 shards, 2 accumulated batches of 3 per step: 6 steps are 12 batches, 3 epochs.
    common = [
        "stage=sft", *FAST, "data.train_per_task=1", "data.batch_size=3", "data.shuffle_buffer=8", f"data.num_workers={num_workers}",
        "trainer.accumulate_grad_batches=2", "sft.max_steps=6", "grpo.max_steps=6", "trainer.val_check_interval=100", "trainer.limit_val_batches=0",
        "callbacks.checkpoint.every_n_train_steps=1",
    ]
    m2r.run(compose(common, tmp_path / "straight", cache_dir))
    straight, seen[:] = list(seen), []
    assert [step for step, _ in straight] == [s for s in range(1, 7) for _ in range(2)]

    run_dir = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        m2r.run(compose([*common, "+callbacks.crash._target_=conftest.CrashAfter", "+callbacks.crash.step=3"], run_dir, cache_dir))
    crashed, seen[:] = list(seen), []
    last = torch.load(run_dir / "sft" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 and last["SFTDataModule"]["train_batches"] == 4
    assert m2r.run(compose(common, run_dir, cache_dir))["sft"]["steps"] == 6
    resumed = list(seen)

    assert crashed == straight[:6]  # steps 1-3 ran; step 3 was not checkpointed
    assert resumed[0][0] == 3  # the resumed run redoes step 3 from the step-2 checkpoint ...
    assert [b for s, b in crashed if s <= 2] + [b for _, b in resumed] == [b for _, b in straight]  # ... on the same batches
