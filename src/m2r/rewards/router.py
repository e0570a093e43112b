"""Routing samples to reward functions: `conf/reward/*.yaml` lists routes, first match wins.

A route matches on a task glob (`spatial/*`) and an answer type, and gives a weighted sum of
reward functions plus the function whose value is the sample's *accuracy* (the p of Eq. 6 and
the difficulty score). Each function's value is kept separately so it can be logged.
A reward function that raises scores 0 for that response (and is logged once), so training never
stops on a strange response. `score_batch` scores a rollout batch at once: functions with a batch
form (math-verify's expression reward) spread their work over a pool of worker processes.

`extraction` (strict | tagged | lenient, `reward.extraction`) is handed to every accuracy function:
strict, the default, reads only a well-formed answer (see `m2r.rewards.extract`).
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import logging
from dataclasses import dataclass

from m2r.data.schema import Sample
from m2r.rewards.extract import EXTRACTION_MODES
from m2r.rewards.functions import FUNCTIONS

log = logging.getLogger(__name__)


@dataclass
class Scored:
    total: float  # the weighted sum: the RL reward
    accuracy: float  # the route's accuracy function
    values: dict[str, float]  # every function the route uses, unweighted


class RewardRouter:
    def __init__(self, functions: dict[str, dict], routes: list[dict], extraction: str = "strict"):
        """`functions`: name -> keyword arguments of that reward function; `routes`: dicts with
        `task`, `answer_type`, `weights` (name -> weight) and `accuracy` (a name); `extraction`:
        how accuracy functions read the answer (strict | tagged | lenient)."""
        if extraction not in EXTRACTION_MODES:
            raise ValueError(f"reward.extraction={extraction!r}: choose one of {EXTRACTION_MODES} (strict: RL reads only a well-formed answer)")
        self.fns = {}
        for name in functions:
            if name not in FUNCTIONS:
                raise ValueError(f"reward.{name}: no reward function of that name; known: {sorted(FUNCTIONS)}")
        for name, fn in FUNCTIONS.items():
            kwargs = dict(functions.get(name) or {})
            if "extraction" in inspect.signature(fn).parameters:
                kwargs.setdefault("extraction", extraction)
            self.fns[name] = functools.partial(fn, **kwargs)
        self.routes = [dict(r) for r in routes]
        for i, r in enumerate(self.routes):
            if not r.get("accuracy"):
                raise ValueError(f"reward.routes[{i}] names no accuracy function: set its `accuracy` (e.g. accuracy: number)")
            r["weights"] = dict(r["weights"])
            for name in list(r["weights"]) + [r["accuracy"]]:
                if name not in self.fns:
                    raise ValueError(f"reward.routes[{i}] uses unknown reward function {name!r}; known: {sorted(self.fns)}")
        self._warned: set[str] = set()

    def route(self, sample: Sample) -> dict:
        for r in self.routes:
            if fnmatch.fnmatch(sample.task, r.get("task", "*")) and fnmatch.fnmatch(sample.answer_type, r.get("answer_type", "*")):
                return r
        raise ValueError(f"no reward route matches task={sample.task!r} answer_type={sample.answer_type!r}; add a route (e.g. task: '*') to the reward config")

    def _call(self, name: str, response: str, sample: Sample) -> float:
        try:
            v = float(self.fns[name](response, sample))
            return v if v == v else 0.0
        except Exception as e:  # a reward must never stop training
            if name not in self._warned:
                self._warned.add(name)
                log.warning("reward %s raised %s: %s; scoring 0 (logged once)", name, type(e).__name__, e)
            return 0.0

    def _call_many(self, name: str, responses: list[str], samples: list[Sample]) -> list[float]:
        fn = self.fns[name]
        batch = getattr(fn.func, "batch", None)
        if batch is None:
            return [self._call(name, r, s) for r, s in zip(responses, samples)]
        try:
            return [v if v == v else 0.0 for v in map(float, batch(responses, samples, *fn.args, **fn.keywords))]
        except Exception as e:
            if name not in self._warned:
                self._warned.add(name)
                log.warning("reward %s raised %s on a batch: %s; scoring it one by one (logged once)", name, type(e).__name__, e)
            return [self._call(name, r, s) for r, s in zip(responses, samples)]

    def score_batch(self, responses: list[str], samples: list[Sample]) -> list[Scored]:
        """Score responses[i] against samples[i] for all i; each function runs once over the
        responses whose route uses it (batch functions spread over their worker pool)."""
        if len(responses) != len(samples):
            raise ValueError(f"score_batch: {len(responses)} responses but {len(samples)} samples")
        routes = [self.route(s) for s in samples]
        uses: dict[str, list[int]] = {}
        for i, r in enumerate(routes):
            for n in sorted(set(r["weights"]) | {r["accuracy"]}):
                uses.setdefault(n, []).append(i)
        values: list[dict[str, float]] = [{} for _ in responses]
        for n, idx in uses.items():
            for i, v in zip(idx, self._call_many(n, [responses[i] for i in idx], [samples[i] for i in idx])):
                values[i][n] = v
        return [
            Scored(total=sum(w * v[n] for n, w in r["weights"].items()), accuracy=v[r["accuracy"]], values=dict(sorted(v.items())))
            for r, v in zip(routes, values)
        ]

    def score(self, response: str, sample: Sample) -> Scored:
        return self.score_batch([response], [sample])[0]


def score_many(router, responses: list[str], samples: list[Sample]) -> list[Scored]:
    """`router.score_batch` where it has one (RewardRouter), else `router.score` one by one (any
    object with a `score(response, sample) -> Scored`, e.g. a custom reward in a test)."""
    batch = getattr(router, "score_batch", None)
    return batch(responses, samples) if batch is not None else [router.score(r, s) for r, s in zip(responses, samples)]


def router_from_config(cfg) -> RewardRouter:
    """A RewardRouter from a `reward` config node (conf/reward/*.yaml)."""
    from omegaconf import OmegaConf

    d = dict(OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg)
    routes = d.pop("routes")
    extraction = d.pop("extraction", "strict")
    return RewardRouter(functions=d, routes=routes, extraction=extraction)
