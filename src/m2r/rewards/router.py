"""Routing samples to reward functions: `conf/reward/*.yaml` lists routes, first match wins.

A route matches on a task glob (`spatial/*`) and an answer type, and gives a weighted sum of
reward functions plus the function whose value is the sample's *accuracy* (the p of Eq. 6 and
the difficulty score). Each function's value is kept separately so it can be logged.
A reward function that raises scores 0 for that response (and is logged once), so training never
stops on a strange response.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from dataclasses import dataclass

from m2r.data.schema import Sample
from m2r.rewards.functions import FUNCTIONS

log = logging.getLogger(__name__)


@dataclass
class Scored:
    total: float  # the weighted sum: the RL reward
    accuracy: float  # the route's accuracy function
    values: dict[str, float]  # every function the route uses, unweighted


class RewardRouter:
    def __init__(self, functions: dict[str, dict], routes: list[dict]):
        """`functions`: name -> keyword arguments of that reward function; `routes`: dicts with
        `task`, `answer_type`, `weights` (name -> weight) and `accuracy` (a name)."""
        self.fns = {}
        for name, kwargs in functions.items():
            if name not in FUNCTIONS:
                raise ValueError(f"reward.{name}: no reward function of that name; known: {sorted(FUNCTIONS)}")
            self.fns[name] = functools.partial(FUNCTIONS[name], **dict(kwargs or {}))
        for name in FUNCTIONS:
            self.fns.setdefault(name, FUNCTIONS[name])
        self.routes = [dict(r) for r in routes]
        for i, r in enumerate(self.routes):
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

    def score(self, response: str, sample: Sample) -> Scored:
        r = self.route(sample)
        names = set(r["weights"]) | {r["accuracy"]}
        values = {n: self._call(n, response, sample) for n in sorted(names)}
        total = sum(w * values[n] for n, w in r["weights"].items())
        return Scored(total=total, accuracy=values[r["accuracy"]], values=values)


def router_from_config(cfg) -> RewardRouter:
    """A RewardRouter from a `reward` config node (conf/reward/*.yaml)."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    routes = d.pop("routes")
    return RewardRouter(functions=d, routes=routes)
