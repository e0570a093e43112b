"""`GRPOModule`: GRPO-RLVR on a multimodal policy (DESIGN.md section 4), manual optimization.

One training step = one rollout batch: B prompts x G sampled responses, rewards from the
router, group advantages (optionally Eq. 6 weights), then `mu` policy updates over the same
rollouts in micro-batches with gradient accumulation, each ending in one optimizer step, so
`trainer.global_step` counts optimizer steps.

Without callbacks it runs with the constant `beta`; `CosineKLAnnealing` anneals `kl_coef` from
`beta` before every step. Eq. 6 weights are on when `adv_reweighting` (algo.adv_reweighting). The reference model (for the KL term) is built only when `needs_reference`, and is
kept out of the checkpoint: it is the initial policy, rebuilt on resume. With LoRA there is no
second copy: the reference is the policy with its adapters disabled (`ref_from_base`).

Under every strategy (`m2r.training`): the micro-batches of one optimizer step sync gradients
once (DDP: no_sync until the last; DeepSpeed: the gradient-accumulation boundary on the last;
FSDP2 reduce-scatters each micro-batch, since holding unsharded gradients would cost the memory
sharding saves); clipping follows `trainer.gradient_clip_val`; generation keeps every rank
stepping (`synced_gpus`) where parameters are sharded (ZeRO-3, FSDP2); the reference model is
sharded like the policy (FSDP2 `fully_shard`, a DeepSpeed ZeRO-3 inference engine).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import lightning as L
import torch

from m2r.data.schema import task_slug
from m2r.rewards.router import RewardRouter, score_many
from m2r.rl.core import advantage_weights, aggregation_normalizer, group_advantages, policy_loss, token_logps
from m2r.rl.engine import HFEngine, RolloutEngine
from m2r.rl.rollout import Rollouts, repetition_loop, select_rows


@dataclass
class Trajectory:
    """One rollout batch as the GRPO phases fill it in (N = B x G rows, L response length)."""

    rollouts: Rollouts
    scores: list = field(default_factory=list)  # [N] Scored
    rewards: torch.Tensor | None = None  # [N]
    accuracy: torch.Tensor | None = None  # [N]
    weights: torch.Tensor | None = None  # [N] Eq. 6 (ones when off)
    advantages: torch.Tensor | None = None  # [N], weighted, on the module's device
    mask: torch.Tensor | None = None  # [N, L] response tokens that count
    divisor: torch.Tensor | None = None  # [N] loss aggregation
    chunks: list[list[int]] = field(default_factory=list)  # micro-batches of row indices
    inputs: list[dict] = field(default_factory=list)  # each micro-batch's prompt inputs (its own image patches)
    prompts: list[tuple[dict, torch.Tensor]] = field(default_factory=list)  # each micro-batch's distinct prompts' inputs, each row's prompt
    old: list[torch.Tensor] | None = None  # sampling policy's log-probs per micro-batch (mu > 1)
    ref: list[torch.Tensor] | None = None  # reference log-probs per micro-batch (KL coefficient > 0)
    beta: float = 0.0  # the KL coefficient of this step


class GRPOModule(L.LightningModule):
    def __init__(
        self,
        policy_factory: Callable[[], torch.nn.Module],
        processor,
        router: RewardRouter,
        ref_factory: Callable[[], torch.nn.Module] | None = None,
        G: int = 4,
        eps_low: float = 0.2,
        eps_high: float = 0.2,
        beta: float = 0.0,
        aggregation: str = "sequence",  # token (DAPO) | sequence (GRPO) | constant (Dr.GRPO)
        scale_std: bool = True,
        mask_truncated: bool = False,
        mu: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        micro_batch_size: int = 8,
        logprob_chunk: int = 256,
        lr: float = 1e-6,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        max_grad_norm: float = 1.0,
        scheduler: str = "constant_with_warmup",
        warmup_steps: int = 0,
        seed: int = 0,
        rollout_log_rows: int = 8,
        ref_from_base: bool = False,  # LoRA: the reference is the policy with adapters disabled
        adv_reweighting: bool = False,  # Eq. 6
        adv_sigma: float = 4.0,
        max_prompt_length: int | None = None,  # prompt tokens, images included; a longer RL prompt is an error naming it
        engine: RolloutEngine | None = None,  # the rollout engine (rollout/ group); None: HFEngine(), every row in one generate call
    ):
        super().__init__()
        if mu < 1:
            raise ValueError(f"algo.mu={mu}: at least one update per rollout batch")
        if G < 2:
            raise ValueError(f"algo.G={G}: group advantages need at least 2 responses per prompt")
        self.save_hyperparameters(ignore=["policy_factory", "processor", "router", "ref_factory", "engine"])
        self.engine: RolloutEngine = engine if engine is not None else HFEngine()
        self.automatic_optimization = False
        self.policy_factory, self.ref_factory = policy_factory, ref_factory
        self.processor, self.router = processor, router
        self.model: torch.nn.Module | None = None
        self.__dict__["ref_model"] = None  # not a submodule: never trained, never checkpointed
        self.kl_coef: float = beta  # CosineKLAnnealing overwrites this before each step
        self.adv_weight_sigma: float | None = adv_sigma if adv_reweighting else None  # Eq. 6; None = off
        self.last_rollouts: list[dict] = []  # the latest step's responses, for RolloutLogger

    def configure_model(self) -> None:
        from m2r.training import shard_model

        if self.model is None:
            self.model = shard_model(self, self.policy_factory().train())
        if self.ref_factory is not None and self.ref_model is None:
            ref = self.ref_factory().eval()
            ref.requires_grad_(False)
            self.__dict__["ref_model"] = shard_model(self, ref)

    def on_fit_start(self) -> None:
        from lightning.pytorch.strategies import DeepSpeedStrategy

        if self.ref_model is None:
            return
        strategy = self.trainer.strategy
        if isinstance(strategy, DeepSpeedStrategy) and strategy.config.get("zero_optimization", {}).get("stage") == 3:
            # Built under zero.Init, its parameters are partitioned: an engine of its own (no optimizer)
            # gathers them in each forward, as the policy's engine does for the policy.
            import deepspeed

            ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
                  "bf16": {"enabled": bool(strategy.config.get("bf16", {}).get("enabled"))}}
            engine = deepspeed.initialize(model=self.ref_model, config=ds)[0]
            engine.eval()
            self.__dict__["ref_model"] = engine
        else:
            self.ref_model.to(self.device)

    def _ref_logps(self, x, rows, prompts) -> torch.Tensor:
        h = self.hparams
        if self.ref_model is not None:
            return token_logps(self.ref_model, x, rows, h.temperature, h.logprob_chunk, prompts)
        with self.model.disable_adapter():  # LoRA: the base model is the reference
            return token_logps(self.model, x, rows, h.temperature, h.logprob_chunk, prompts)

    def _grad_sync(self, last: bool):
        """Sync gradients on the last micro-batch of an optimizer step only."""
        from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, DeepSpeedStrategy):
            strategy.model.set_gradient_accumulation_boundary(last)
            return nullcontext()
        if isinstance(strategy, DDPStrategy) and not last:
            return strategy.block_backward_sync()
        return nullcontext()

    def forward(self, **inputs):
        return self.model(**inputs)

    # ------------------------------------------------------------------------------------------

    def training_step(self, batch: dict | list, batch_idx: int) -> None:
        """One rollout batch, in named phases over one `Trajectory`: generate -> score -> advantages -> reference
        (old-policy and reference log-probs) -> update. `batch`: a CurriculumDataModule batch
        (`{"task", "samples", "cursor"}`) or a plain list of (Sample, images) pairs."""
        t0 = time.perf_counter()
        samples = batch["samples"] if isinstance(batch, dict) else batch
        phases: dict[str, float] = {}
        traj = self._timed(phases, "generate", self.generate, samples)
        self._timed(phases, "score", self.score, traj)
        self._timed(phases, "advantages", self.advantages, traj)
        self._timed(phases, "reference", self.reference, traj)
        stats = self._timed(phases, "update", self.update, traj)
        self._log_step(traj.rollouts, traj.scores, traj.rewards, traj.accuracy, traj.weights, traj.advantages.cpu(), stats, traj.beta,
                       time.perf_counter() - t0)
        for name, seconds in phases.items():
            self.log(f"train/time/{name}", seconds, batch_size=len(traj.rollouts.texts))

    def _timed(self, phases: dict[str, float], name: str, fn, *args):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        phases[name] = time.perf_counter() - t
        return out

    def generate(self, samples) -> Trajectory:
        """G responses per prompt from the rollout engine, seeded by (seed, step, rank)."""
        from m2r.data.media import count_media
        from m2r.training import params_sharded, same_media_across_ranks

        h = self.hparams
        counts = [count_media(media) for _, media in samples]
        same_media_across_ranks(self, any(i for i, _ in counts), any(v for _, v in counts), f"GRPO step {self.global_step}")
        ro = self.engine.generate(
            self.model, self.processor, samples, h.G, h.max_new_tokens, h.temperature, h.top_p,
            seed=h.seed * 1_000_003 + self.global_step * 7919 + self.global_rank, synced_gpus=params_sharded(self.trainer.strategy),
            max_prompt_length=h.max_prompt_length,
        )
        return Trajectory(ro)

    def score(self, traj: Trajectory) -> None:
        """Rewards and accuracies from the router (math-verify calls spread over its worker pool)."""
        ro, G = traj.rollouts, self.hparams.G
        traj.scores = score_many(self.router, ro.texts, [ro.samples[i // G] for i in range(len(ro.texts))])
        traj.rewards = torch.tensor([s.total for s in traj.scores], dtype=torch.float32)  # [N]
        traj.accuracy = torch.tensor([s.accuracy for s in traj.scores], dtype=torch.float32)  # [N]

    def advantages(self, traj: Trajectory) -> None:
        """Group advantages (Eq. 6 weights when on), the loss mask and divisor, and the micro-batches."""
        h, ro = self.hparams, traj.rollouts
        N = len(ro.texts)
        adv = group_advantages(traj.rewards, h.G, h.scale_std)  # [N]
        traj.weights = advantage_weights(traj.accuracy, h.G, self.adv_weight_sigma) if self.adv_weight_sigma is not None else torch.ones(N)
        traj.advantages = (adv * traj.weights).to(self.device)  # [N]
        mask = ro.completion_mask  # [N, L]
        if h.mask_truncated:
            mask = mask * (~ro.truncated).long()[:, None]
        traj.mask = mask
        traj.divisor = aggregation_normalizer(mask, h.aggregation, h.max_new_tokens).to(self.device)  # [N]
        traj.chunks = [list(range(s, min(s + h.micro_batch_size, N))) for s in range(0, N, h.micro_batch_size)]
        traj.inputs = [select_rows(ro.prompt_inputs, rows, ro.images_per_row, ro.videos_per_row) for rows in traj.chunks]
        traj.prompts = [self._distinct_prompts(ro, rows) for rows in traj.chunks]

    def _distinct_prompts(self, ro, rows: list[int]) -> tuple[dict, torch.Tensor]:
        """A micro-batch's distinct prompts (each one's first row of the rollout record) and each row's index among them."""
        G = self.hparams.G
        firsts = list(dict.fromkeys(r // G for r in rows))
        index = torch.tensor([firsts.index(r // G) for r in rows], dtype=torch.long)
        return select_rows(ro.prompt_inputs, [b * G for b in firsts], ro.images_per_row, ro.videos_per_row), index

    @torch.no_grad()
    def reference(self, traj: Trajectory) -> None:
        """The sampling policy's log-probs (mu > 1) and the reference model's (KL coefficient > 0), per micro-batch."""
        h, ids = self.hparams, traj.rollouts.completion_ids
        traj.beta = float(self.kl_coef)
        triples = list(zip(traj.inputs, traj.chunks, traj.prompts))
        traj.old = [token_logps(self.model, x, ids[r], h.temperature, h.logprob_chunk, p) for x, r, p in triples] if h.mu > 1 else None
        if traj.beta != 0.0 and self.ref_model is None and not h.ref_from_base:
            raise RuntimeError("kl_coef > 0 but no reference model was built; set needs_reference (the grpo stage does this from algo.beta and the KL callback)")
        traj.ref = [self._ref_logps(x, ids[r], p) for x, r, p in triples] if traj.beta != 0.0 else None

    def update(self, traj: Trajectory) -> dict[str, list]:
        """`mu` optimizer steps over the trajectory, each accumulating gradients over its micro-batches."""
        from m2r.training import clip_gradients

        h, ids = self.hparams, traj.rollouts.completion_ids
        opt, sched = self.optimizers(), self.lr_schedulers()
        stats = defaultdict(list)
        for _ in range(h.mu):
            for k, (x, rows) in enumerate(zip(traj.inputs, traj.chunks)):
                with self._grad_sync(last=k == len(traj.chunks) - 1):
                    logps = token_logps(self.model, x, ids[rows], h.temperature, h.logprob_chunk, traj.prompts[k])  # [n, L]
                    loss, st = policy_loss(
                        logps, traj.old[k] if traj.old is not None else logps.detach(), traj.advantages[rows], traj.mask[rows], traj.divisor[rows],
                        h.eps_low, h.eps_high, traj.beta, traj.ref[k] if traj.ref is not None else None,
                    )
                    self.manual_backward(loss)
                stats["loss"].append(loss.detach())
                for name, v in st.items():
                    stats[name].append(v)
            clip_gradients(self, opt, h.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        return stats

    def _log_step(self, ro, scores, rewards, accuracy, weights, adv, stats, beta, elapsed) -> None:
        G, N = self.hparams.G, len(ro.texts)
        log = lambda k, v: self.log(k, float(v), batch_size=N)  # noqa: E731
        log("train/loss", torch.stack(stats["loss"]).sum() / self.hparams.mu)
        log("train/reward", rewards.mean())
        log("train/acc", accuracy.mean())
        per_fn, per_task, acc_task = defaultdict(list), defaultdict(list), defaultdict(list)
        for i, s in enumerate(scores):
            for name, v in s.values.items():
                per_fn[name].append(v)
            per_task[task_slug(ro.samples[i // G].task)].append(s.total)
            acc_task[task_slug(ro.samples[i // G].task)].append(s.accuracy)
        for name, vs in per_fn.items():
            log(f"train/reward/{name}", sum(vs) / len(vs))
        for t, vs in per_task.items():
            log(f"train/reward_by_task/{t}", sum(vs) / len(vs))
            log(f"train/acc_by_task/{t}", sum(acc_task[t]) / len(acc_task[t]))
        diffs = [s.difficulty for s in ro.samples if s.difficulty is not None]
        if diffs:
            log("train/batch_difficulty", sum(diffs) / len(diffs))
        log("train/zero_std_frac", (rewards.view(-1, G).std(dim=1) < 1e-8).float().mean())
        lengths = ro.completion_mask.sum(dim=1).float()
        log("train/prompt_len_max", max(ro.prompt_lengths))
        log("train/len_mean", lengths.mean())
        log("train/len_max", lengths.max())
        log("train/truncated", ro.truncated.float().mean())
        log("train/repetition", sum(repetition_loop(t) for t in ro.texts) / N)
        tok = torch.stack(stats["tokens"]).sum()
        log("train/clip_frac", sum(c * t for c, t in zip(stats["clip_frac"], stats["tokens"])) / tok.clamp(min=1))
        log("train/kl", sum(k * t for k, t in zip(stats["kl"], stats["tokens"])) / tok.clamp(min=1))
        log("train/kl_coef", beta)
        log("train/adv_weight_mean", weights.mean())
        log("train/adv_weight_std", weights.std() if N > 1 else 0.0)
        log("train/step_time", elapsed)
        log("train/tokens_per_s", lengths.sum() / elapsed)
        self.last_rollouts = [
            {"step": self.global_step, "id": ro.samples[i // G].id, "task": ro.samples[i // G].task, "response": ro.texts[i],
             "rewards": scores[i].values, "total": scores[i].total, "accuracy": scores[i].accuracy, "advantage": float(adv[i]),
             "truncated": bool(ro.truncated[i])}
            for i in range(min(N, self.hparams.rollout_log_rows * G))
        ]

    def configure_optimizers(self):
        from transformers import get_scheduler

        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay, betas=tuple(h.betas))
        total = self.trainer.max_steps
        if total is None or total < 0:
            raise ValueError("GRPO streams prompts: set trainer.max_steps (optimizer steps; mu per rollout batch)")
        sched = get_scheduler(h.scheduler, optimizer, num_warmup_steps=h.warmup_steps, num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
