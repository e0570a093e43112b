"""Structured-config schemas for the config groups people edit most (`model`, `data`).

Each YAML in `conf/model/` and `conf/data/` starts from one of these dataclasses (its defaults
list names `schema`), so a misspelt key or a value of the wrong type fails when Hydra composes
the config, with a message that names the key, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TinyModelConfig:
    """A random-init Qwen2.5-VL built from config, with a tokenizer the project trains itself."""

    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_num_heads: int = 2
    vision_intermediate_size: int = 128
    vocab_size: int = 2048  # BPE vocabulary trained on the embedded corpus
    corpus_samples_per_task: int = 40  # generated samples per task that feed the tokenizer corpus
    seed: int = 0  # weight init
    initializer_range: float = 0.08  # std of the random init (source=tiny only); about 1/sqrt(hidden_size). At Hugging Face's 0.02 the tiny model did not learn the colour of the only object in a scene in 1000 steps, at 0.08 by step 700 (benchmarks/README.md)


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class ModelConfig:
    name: str = "tiny_qwen2_5_vl"
    source: str = "tiny"  # tiny: build from `tiny` below | random: real dimensions from `shape`, random weights | pretrained: load from `path`
    shape: Optional[str] = None  # source=random: 3b | 7b, the released Qwen2.5-VL-3B/7B-Instruct dimensions (see model/shapes.py)
    path: Optional[str] = None  # local folder of a Hugging Face checkpoint (source=pretrained)
    processor_path: Optional[str] = None  # defaults to `path`
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)  # source=random uses its tokenizer settings and seed
    trust_remote_code: bool = False  # only for checkpoints with custom code (the released M2-Reasoning)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "auto"  # auto: flash_attention_2 when installed and on GPU, else sdpa
    gradient_checkpointing: bool = False
    freeze_vision: bool = False  # the vision tower (patch embedding + blocks)
    freeze_projector: bool = False  # the merger that maps vision features into the LM
    freeze_language: bool = False  # the language model and LM head
    lora: LoraConfig = field(default_factory=LoraConfig)
    min_pixels: int = 3136  # 56*56
    max_pixels: int = 28224  # 168*168: 144 patches, 36 image tokens after the 2x2 merge
    video_min_pixels: int = 3136  # per video frame (the M2-Reasoning release: 128*28*28)
    video_max_pixels: int = 12544  # per video frame, 112*112 (the release: 768*28*28); two frames make one temporal patch


class DataSource(str, Enum):
    synthetic = "synthetic"  # the embedded generators
    shards = "shards"  # existing m2r shards under `root`
    jsonl = "jsonl"  # import a user's JSONL or parquet files


@dataclass
class DataConfig:
    source: DataSource = DataSource.synthetic
    root: Optional[str] = None  # shard folder; for synthetic/jsonl the build output (default: <run>/build)
    train_files: list[str] = field(default_factory=list)  # jsonl source: JSONL or parquet files
    val_files: list[str] = field(default_factory=list)
    rl_files: list[str] = field(default_factory=list)  # RL prompts (need answers, not traces)
    test_files: list[str] = field(default_factory=list)  # the held-out set the recipe evaluates before and after RL
    image_root: Optional[str] = None  # relative image paths in imported files resolve against this
    format: str = "auto"  # jsonl source: auto | m2 | llava
    tasks: list[str] = field(default_factory=list)  # synthetic source: embedded tasks to generate
    train_per_task: int = 64
    val_per_task: int = 8
    rl_per_task: int = 32  # RL prompts per task (the paper keeps SFT and RL data apart)
    test_per_task: int = 16  # held-out samples per task, never trained on
    noisy_trace_ratio: float = 0.0  # synthetic: share of SFT traces given one failure for the quality filter to find
    mc_ratio: float = 0.3  # share of numeric questions posed as multiple choice
    image_size: int = 168
    num_frames: int = 8  # frames per video: rendered per camera walk (synthetic), sampled uniformly from imported videos
    video_fps: Optional[float] = None  # imported videos: sample at this rate instead (capped at num_frames frames, evenly over the video)
    video_frame_size: int = 112  # synthetic camera walks: frame side, pixels
    samples_per_shard: int = 64
    on_bad_sample: str = "raise"  # raise | skip (skips are counted, logged and kept in the manifest)
    llava_target: str = "wrap"  # conversations: the assistant turn as SFT target, wrap (in the M2 format) | keep
    max_question_chars: int = 16384  # imported rows past these bounds are bad samples
    max_answer_chars: int = 1024
    max_cot_chars: int = 65536
    max_image_pixels: int = 40_000_000  # decoded in full at build time; larger images are bad samples
    batch_size: int = 8
    num_workers: int = 0
    shuffle_buffer: int = 256
    max_length: int = 512  # tokens per sequence, image tokens included


@dataclass
class FormatRewardConfig:
    strict: bool = True  # require a non-empty \\boxed{} inside <answer>


@dataclass
class NumberRewardConfig:
    rel_tol: float = 0.0
    abs_tol: float = 1e-6


@dataclass
class EDNMConfig:
    gamma: float = 1.0
    lam: float = 2.0
    eps: float = 1e-6


@dataclass
class ExpressionRewardConfig:
    timeout_s: float = 2.0
    workers: int = 2


@dataclass
class RouteConfig:
    task: str = "*"  # fnmatch glob on the sample's task
    answer_type: str = "*"  # glob on the sample's answer_type
    weights: dict[str, float] = field(default_factory=dict)  # reward function -> weight in the total
    accuracy: str = MISSING  # the function whose value is the accuracy (Eq. 6, difficulty, curriculum): every route names it


@dataclass
class RewardConfig:
    extraction: str = "strict"  # strict | tagged | lenient: how accuracy functions read the answer (m2r.rewards.extract)
    format: FormatRewardConfig = field(default_factory=FormatRewardConfig)
    number: NumberRewardConfig = field(default_factory=NumberRewardConfig)
    ednm: EDNMConfig = field(default_factory=EDNMConfig)
    expression: ExpressionRewardConfig = field(default_factory=ExpressionRewardConfig)
    routes: list[RouteConfig] = field(default_factory=list)


@dataclass
class AlgoConfig:
    """The GRPO family: `algo=grpo|dapo|dr_grpo` presets set these. Every key is a GRPOModule argument
    (the stage merges them into `grpo.module`), so there is no name key: the preset's name is Hydra's choice."""

    G: int = 4  # responses per prompt (paper: 16)
    eps_low: float = 0.2  # clip range below 1
    eps_high: float = 0.2  # clip range above 1 (DAPO: 0.28)
    beta: float = 0.0  # the KL coefficient: constant, or the peak of CosineKLAnnealing's schedule (callbacks=m2); 0 = no KL, no reference model
    aggregation: str = "sequence"  # token (DAPO) | sequence (GRPO) | constant (Dr.GRPO)
    scale_std: bool = True  # divide advantages by the group std (Dr.GRPO: false)
    mask_truncated: bool = False  # drop responses that hit max_new_tokens from the loss (DAPO)
    mu: int = 1  # policy updates per rollout batch
    adv_reweighting: bool = False  # Eq. 6: each group's advantages scaled by adv_sigma * p (1 - p); the one switch for it
    adv_sigma: float = 4.0  # Eq. 6's sigma (4: weight 1 at p = 0.5)


@dataclass
class ScoringConfig:
    """Difficulty scoring by rollouts (DESIGN.md section 4)."""

    N: int = 8  # sampled responses per sample; difficulty = 1 - mean accuracy
    batch_size: int = 8  # prompts per generate call (x N responses)
    max_new_tokens: int = 128  # response budget
    temperature: float = 1.0  # sampling temperature
    top_p: float = 1.0
    model: str = "auto"  # auto: <run>/sft/hf when complete, else model.*; or a local checkpoint folder


@dataclass
class CurriculumConfig:
    """`curriculum=ordered|random`: how the RL prompts are ordered and streamed."""

    name: str = "ordered"
    order: str = "ordered"  # ordered: easy to hard within each task | random: the same samples, seeded order (ablation)
    drop_solved: bool = True  # drop d = 0 (every response correct)
    drop_unsolved: bool = True  # drop d = 1 (no response correct)
    tol: float = 0.01  # d <= tol counts as solved, d >= 1 - tol as unsolved (graded rewards such as EDNM never reach 1 exactly)
    samples_per_shard: int = 8  # curriculum shard size: the granularity of ordering across ranks
    end_policy: str = "repeat_hardest"  # a task's stream ended: repeat_hardest (its last shard, cycled) | drop (leave the mix)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


@dataclass
class MixConfig:
    """`mix=...`: the probability of drawing each task for a step's batch."""

    name: str = "uniform"
    weights: dict[str, float] = field(default_factory=lambda: {"*": 1.0})  # task glob -> weight; the last matching glob wins, no match = 0
    proportional: bool = False  # also multiply by the task's sample count on the rank


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="data", name="schema", node=DataConfig)
    cs.store(group="reward", name="schema", node=RewardConfig)
    cs.store(group="algo", name="schema", node=AlgoConfig)
    cs.store(group="curriculum", name="schema", node=CurriculumConfig)
    cs.store(group="mix", name="schema", node=MixConfig)
