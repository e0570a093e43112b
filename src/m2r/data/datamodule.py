"""`SFTDataModule`: streams the shards of all tasks for cold-start SFT (GRPO prompts: `curriculum.py`).

Shards are split explicitly: every epoch the full shard list is permuted with a seed shared by
all ranks, then shard i goes to rank i % world and, within a rank, to worker j % num_workers.
Samples pass through a seeded shuffle buffer (per-rank seed). The training stream repeats
epoch after epoch, so every rank always has a next batch (iterable data: set
`trainer.max_steps`). The validation stream gives every rank the same number of samples, so
DDP never waits on a rank that ran out.

Resume: the checkpoint holds how many training batches this rank's loop has taken; a resumed
run replays the seeded stream past them (raw records, not decoded) and continues at the next
unseen batch, so a killed-and-resumed run trains on the same samples as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from m2r.data.collate import M2_SYSTEM_PROMPT, SFTCollator
from m2r.data.shards import read_manifest, sample_stream, shard_urls

log = logging.getLogger(__name__)


class SFTDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str | Path,
        processor,
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle_buffer: int = 256,
        max_length: int = 512,
        seed: int = 0,
        system_prompt: str | None = M2_SYSTEM_PROMPT,
        preflight_samples: int = 32,
        train_root: str | Path | None = None,
        extra_train_roots: list[str | Path] = (),
    ):
        super().__init__()
        self.root = Path(root)
        self.train_root = Path(train_root) if train_root else self.root  # e.g. the quality-filtered traces
        self.extra_train_roots = [Path(r) for r in extra_train_roots]  # more train splits in the same stream (sft.rehearsal's listings)
        self.processor = processor
        self.batch_size, self.num_workers, self.shuffle_buffer = batch_size, num_workers, shuffle_buffer
        self.seed, self.preflight_samples = seed, preflight_samples
        self.collator = SFTCollator(processor, max_length, system_prompt)
        self.preflight_report: dict | None = None
        self.train_batches = 0  # training batches the loop has taken on this rank, restored on resume
        self._resumed_stream: dict | None = None  # the stream settings of the checkpoint we resumed from

    @property
    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return 0, 1

    def setup(self, stage: str | None = None) -> None:
        self.train_manifest = read_manifest(self.train_root, "train")
        self.train_urls = shard_urls(self.train_root, "train")
        probe_roots = [(self.train_root, self.train_manifest)]
        for extra in self.extra_train_roots:  # their shards join the one stream: split over ranks and shuffled like the rest
            probe_roots.append((extra, read_manifest(extra, "train")))
            self.train_urls += shard_urls(extra, "train")
        self.val_urls = shard_urls(self.root, "val") if (self.root / "val" / "manifest.json").exists() else []
        self.val_count = read_manifest(self.root, "val")["count"] if self.val_urls else 0
        if self.val_urls and read_manifest(self.root, "val").get("without_cot"):
            log.warning("val has %d sample(s) without a reasoning trace ('cot'): SFT validation is off (they still serve stage=eval benchmark=embedded); "
                        "give every val row a cot to validate SFT on them", read_manifest(self.root, "val")["without_cot"])
            self.val_urls, self.val_count = [], 0
        _, world = self._rank_world
        need = world * max(1, self.num_workers)
        if len(self.train_urls) < need:
            raise ValueError(
                f"{self.train_root}/train{' and the extra train splits ' + ', '.join(map(str, self.extra_train_roots)) if self.extra_train_roots else ''} "
                f"hold {len(self.train_urls)} shard(s) but {world} rank(s) x {max(1, self.num_workers)} worker(s) need at least {need}; "
                f"rebuild with a smaller data.samples_per_shard or lower data.num_workers"
            )
        if self.val_urls and len(self.val_urls) < world:
            log.warning("val has %d shard(s) for %d ranks; some ranks validate on repeated shards", len(self.val_urls), world)
        # Pre-flight: the first samples of every task must fit max_length with their image tokens.
        per_task = max(1, self.preflight_samples // sum(len(m["tasks"]) for _, m in probe_roots))
        probe = []
        for root, manifest in probe_roots:
            for entry in manifest["tasks"].values():
                url = str(root / "train" / entry["shards"][0]["path"])
                probe.extend(itertools.islice(sample_stream([url], shuffle_shards=False), per_task))
        self.preflight_report = self.collator.preflight(probe)
        log.info("pre-flight: longest prompt %d tokens, longest sample %d, %.0f%% of probed samples truncated at max_length=%d",
                 self.preflight_report["max_prompt"], self.preflight_report["max_total"], 100 * self.preflight_report["truncated_share"], self.collator.max_length)

    def _stream_settings(self) -> dict:
        """What fixes the training stream of a rank: replaying a count of batches needs all of it unchanged."""
        _, world = self._rank_world
        return {"world_size": world, "num_workers": self.num_workers, "batch_size": self.batch_size, "seed": self.seed,
                "shuffle_buffer": self.shuffle_buffer, "train_shards": len(self.train_urls)}

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world
        if self.train_batches:
            if self._resumed_stream is not None and self._resumed_stream != self._stream_settings():
                log.warning("resuming SFT with a different data stream (checkpoint %s, now %s): skipping %d batches, but the next samples "
                            "are not those the interrupted run would have taken", self._resumed_stream, self._stream_settings(), self.train_batches)
            log.info("resuming the SFT stream of rank %d after %d batches", rank, self.train_batches)
        stream = sample_stream(self.train_urls, rank, world, seed=self.seed, shuffle_shards=True, shuffle_buffer=self.shuffle_buffer, repeat=True,
                               skip_batches=self.train_batches, batch_size=self.batch_size)
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collator, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_urls:
            return []
        rank, world = self._rank_world
        # Equal work on every rank: ceil(count / world) samples each, spread over the workers.
        per_rank = math.ceil(self.val_count / world)
        per_worker = math.ceil(per_rank / max(1, self.num_workers))
        urls = self.val_urls if len(self.val_urls) >= world else self.val_urls * world
        stream = sample_stream(urls, rank, world, seed=self.seed, shuffle_shards=False, repeat=True, epoch_size=per_worker)
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collator)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Counted here, not in the dataset: DataLoader workers and Lightning's fetcher prefetch batches
        # the loop has not taken yet, and this hook runs once per batch the loop takes, just before
        # training on it, so the count in a checkpoint is exactly the batches trained on before it.
        # Not global_step * accumulate_grad_batches: that misses the batches of an unfinished
        # accumulation and breaks when accumulate_grad_batches changes between runs.
        if self.trainer is not None and self.trainer.training:  # validation and sanity batches do not count
            self.train_batches += 1
        return batch

    def state_dict(self) -> dict:
        # One count for all ranks: every rank takes the same number of batches (its own stream,
        # steps in lockstep), so rank 0's count, the one the checkpoint file gets, is every rank's.
        return {"train_batches": self.train_batches, "stream": self._stream_settings()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train_batches = int(state_dict.get("train_batches", 0))
        self._resumed_stream = state_dict.get("stream")
