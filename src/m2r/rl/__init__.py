"""GRPO-RLVR pieces: rollouts, advantages, advantage weights, KL and its schedule, policy losses."""
