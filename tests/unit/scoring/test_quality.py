"""The rule-based quality scorer on hand-written good and bad traces, and judge parsing."""

from __future__ import annotations

import pytest

from m2r.data.schema import Sample
from m2r.data.tasks import generate
from m2r.scoring.quality import QualityConfig, parse_judge, score_trace

S = Sample(id="x", task="general/geometry", question="Area of a 3 by 4 rectangle?", answer="12", answer_type="number")
GOOD = (
    "<think>\nThe rectangle's sides are 3 and 4.\nIts area is 3 x 4 = 12 square units.\n"
    "Let me verify: 12 / 3 = 4, which matches the other side.\n</think>\n<answer>\nThe area is \\boxed{12}\n</answer>"
)


def test_good_trace_scores_full_marks():
    q = score_trace(GOOD, S)
    assert (q.structural, q.cognitive, q.verification) == (1.0, 1.0, 1.0) and q.total == 1.0


def test_missing_tags_lose_structure():
    q = score_trace(GOOD.replace("<think>", "").replace("</think>", ""), S)
    assert q.parts["format"] == 0.0 and q.structural == 0.5 and q.total < QualityConfig().threshold


def test_wrong_answer_loses_structure():
    q = score_trace(GOOD.replace("\\boxed{12}", "\\boxed{13}"), S)
    assert q.parts["answer"] == 0.0 and q.structural == 0.5
    assert q.total == pytest.approx(0.5 * 0.5 + 0.25 + 0.25)  # 0.75: only structure is lost


def test_repetition_loop_loses_cognitive_load():
    loop = "<think>\nThe sides are 3 and 4.\n" + "the area is the area is " * 40 + "\n</think>\n<answer>\\boxed{12}</answer>"
    q = score_trace(loop, S)
    assert q.parts["repetition"] == 0.0 and q.cognitive < 1.0


def test_no_verification_scores_zero_richness():
    plain = GOOD.replace("Let me verify: 12 / 3 = 4, which matches the other side.\n", "So that is the result.\n")
    q = score_trace(plain, S)
    assert q.verification == 0.0 and q.parts["verification_cues"] == 0.0 and q.total == pytest.approx(0.75)


def test_too_short_and_empty():
    assert score_trace("<think>12</think><answer>\\boxed{12}</answer>", S).parts["length"] == 0.0
    empty = score_trace("", S)
    assert empty.total == 0.0 and empty.structural == 0.0


def test_every_embedded_trace_passes_the_default_threshold():
    from m2r.data.tasks import TASKS

    for task in TASKS:
        for i in range(5):
            s, _ = generate(task, i, 0, "t", 56, 0.5)
            q = score_trace(s.cot, s)
            assert q.total >= QualityConfig().threshold and q.structural == 1.0, (task, q)


def test_parse_judge_is_robust():
    assert parse_judge("structural: 5, cognitive: 3, verification: 1") == {"structural": 1.0, "cognitive": 0.5, "verification": 0.0}
    assert parse_judge("**Structural**: 4/5\n**Cognitive load**: 4/5\n**Verification richness** - 2/5") == pytest.approx({"structural": 0.75, "cognitive": 0.75, "verification": 0.25})
    assert parse_judge("verification: 3 structural: 2 cognitive: 5") == pytest.approx({"structural": 0.25, "cognitive": 1.0, "verification": 0.5})
    assert parse_judge("structural: 4, cognitive: 9") is None and parse_judge("") is None and parse_judge(None) is None


def test_judge_model_plumbing_with_fallback(processor):
    """A real local model as judge: the tiny random model cannot follow the rubric, so every
    judgement is unparsable and falls back to the rule-based score (counted)."""
    from m2r.config import ModelConfig
    from m2r.model.load import build_model
    from m2r.scoring.quality import judge_scores

    model = build_model(ModelConfig(), processor)
    scores, fallbacks = judge_scores(model, processor, [(S, GOOD), (S, "")], batch_size=2, max_new_tokens=6)
    assert fallbacks == 2 and scores[0].total == 1.0 and scores[1].total == 0.0


def test_quality_step_with_a_local_causal_lm_judge(processor, tmp_path, cache_dir):
    """`quality.judge=<folder>` with a text-only causal LM: loaded from the folder, prompted with the
    rubric; a random model's replies are unparsable, so every trace falls back to the rules (counted)
    and the kept set equals the rule-based one."""
    import copy

    from transformers import Qwen2Config, Qwen2ForCausalLM

    import m2r
    from conftest import FAST, N_TASKS, compose

    tok = copy.deepcopy(processor.tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    judge = tmp_path / "judge"
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1)).save_pretrained(judge)
    tok.save_pretrained(judge)
    base = [*FAST, "stage=score", "stage.steps=[build,quality]", "data.train_per_task=2"]
    rules = m2r.run(compose(base, tmp_path / "rules", cache_dir))["quality"]
    judged = m2r.run(compose([*base, f"quality.judge={judge}"], tmp_path / "judged", cache_dir))["quality"]
    assert judged["scorer"] == "judge" and judged["judge_fallbacks"] == judged["in"] == 2 * N_TASKS
    assert judged["kept"] == rules["kept"] and rules["scorer"] == "rules"
    with pytest.raises(FileNotFoundError, match="never downloads"):
        m2r.run(compose([*base, "quality.judge=Qwen/Qwen2.5-7B-Instruct"], tmp_path / "bad", cache_dir))
