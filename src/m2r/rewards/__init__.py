"""Rewards for GRPO-RLVR: answer extraction, reward functions, routing by task and answer type."""

from m2r.rewards.extract import extract_answer, last_boxed, parse_number
from m2r.rewards.functions import choice_reward, ednm_reward, expression_reward, format_reward, number_reward, text_reward
from m2r.rewards.router import RewardRouter, Scored, router_from_config

__all__ = [
    "extract_answer", "last_boxed", "parse_number", "format_reward", "choice_reward", "number_reward", "ednm_reward",
    "expression_reward", "text_reward", "RewardRouter", "Scored", "router_from_config",
]
