"""Can the tiny language model learn to look a name up in its context? Text only, a few minutes a run on 2 cores.

    python benchmarks/recall_probe.py [--task lookup|pairs] [--steps 2000] [--locate 0.5] [--names few|all]
                                      [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--lr 5e-4] [--out F.json]
                                      [--stop-at N] [--save DIR] [--init DIR] [--line words|colon] [--unique-colours]
                                      [--gap N] [--key-tokens 1|2] [--values-per-key 1|2] [--value-gap N]

Every two-object spatial trace looks the question's objects up in the listing it has just written (`perceive.lookup`),
and the warm-up models do not learn that copy: given the right listing, their look-ups are read no better than the
listing itself (`listing_probe.py --locate --teacher-forced`). This probe asks whether the language model can learn it
at all, without images and in seconds per hundred steps:

- `lookup`: the warm-up's own question and trace text (`perceive.QUESTION`, `LOCATE`, `numbered`, `reading_line`)
  over random names and *random* readings (columns still rise left to right), so a look-up's digit is right above its
  prior only by copying the line for its name. `--locate` is the share of texts with look-ups (the warm-up's 0.5),
  `--names all` asks for 1 to all of a listing's objects instead of 1 or 2.
- `pairs`: the same mechanism without language, multi-query associative recall: `--pairs` key-value pairs of
  random token ids, then every key again in random order, each to be followed by its value.

The model is the tiny LM as `model=tiny_qwen2_5_vl` builds it (`--layers`, `--hidden`, `--heads`, `--kv-heads` change
its shape), trained from scratch with the warm-up's optimizer (experiment=tiny_m2's `perceive.module`: AdamW at lr 5e-4,
weight decay 0.01 on matrices, 20 warm-up steps then cosine to 0; batch 8). Every `--steps`/8 steps it prints the last
batch's loss and the teacher-forced (greedy) accuracy on `--eval` fixed held-out texts of the recalled tokens
(`lookup_acc`; pairs: the values) and of the same texts with the listing's readings (pairs: the values) redrawn
(`lookup_acc_redrawn`). The gap measures any use of the listing's digits, not the match of the name: a model that ignores
the names and answers the listing's most common column and row also loses on redrawn texts. So each task prints, first,
what a model that never matches a name or key gets (`name_blind`, `key_blind`), and a score at that line is no binding:

- lookup `name_blind`: each look-up digit answered by the most common digit of its kind (column or row) in the text's
  listing, on the held-out texts;
- pairs `key_blind`: per query, a model that answers the most common value among the pairs not yet queried (it sees which
  were), exactly: E[most common count of r values] / r for the r pairs left (`key_blind`). The first query
  (`first_acc`, scored alone) is the one that elimination does not help; the last is always right.

`listing_acc` (lookup) scores the listing's own digits, which nothing predicts but the columns' order.

What stops the binding is measured with options that change one thing at a time (`benchmarks/README.md`): `--line colon`
(three tokens between the name and its column digit, not four) and `--unique-colours` (the colour alone identifies an object) for the
look-ups; for the pairs, `--gap N` (fillers between a key and its value, as "is in column" stands between a name and
its digit), `--key-tokens 2` (colour-and-shape-like keys) and `--values-per-key 2` with `--value-gap N` (a column, then
a row).

`--save DIR` keeps the trained model and `--init DIR` starts from it, so binding learnt on one task can be tried on
the other (e.g. `--task pairs --batch 64 --steps 8000 --stop-at 2000 --save DIR`, then `--task lookup --init DIR`);
`--stop-at N` ends a run early with the learning rate still where an `--steps` schedule has it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from listing_probe import reading_parts  # noqa: E402  (the listing's reading digits and the look-ups')


def colon_line(name: str, column: int, row: int) -> str:
    """`--line colon`: a reading whose digits stand closer to the name, "The red cube: column 1, row 3." (three tokens
    between the name and its column digit, `:`, ` column` and the space, not the warm-up's four)."""
    return f"The {name}: column {column}, row {row}."


def lookup_text(rng: random.Random, locate: float, many: bool, line: str = "words", unique_colours: bool = False) -> tuple[str, str, int]:
    """(text, the same text with the listing's readings redrawn, objects listed): a listing of random objects and
    readings in the warm-up's words (`line="colon"`: `colon_line`), and with probability `locate` the question's look-ups
    after it. `unique_colours`: every object its own colour, so that the colour alone names it."""
    from m2r.data.perceive import LOCATE, QUESTION, numbered, reading_line
    from m2r.data.scene import PALETTE, SHAPES

    read = colon_line if line == "colon" else reading_line
    n = rng.randint(2, 6)
    if unique_colours:
        names = [f"{c} {rng.choice(SHAPES)}" for c in rng.sample(sorted(PALETTE), n)]
    else:
        names = [f"{c} {s}" for c, s in rng.sample([(c, s) for c in PALETTE for s in SHAPES], n)]
    cols = sorted(rng.randint(1, 3) for _ in names)  # left to right, as a listing is
    rows = [rng.randint(1, 3) for _ in names]
    asked: list[int] = []
    question = QUESTION
    if rng.random() < locate:
        asked = rng.sample(range(n), rng.randint(1, n) if many else min(n, rng.choice((1, 2))))
        question += LOCATE.format(" and the ".join(names[i] for i in asked), "are" if len(asked) > 1 else "is")
    look = [read(names[i], cols[i], rows[i]) for i in asked]
    other_cols = sorted(rng.randint(1, 3) for _ in names)
    other_rows = [rng.randint(1, 3) for _ in names]
    text = lambda c, r: f"{question}\n<think>\n" + "\n".join(numbered([read(m, a, b) for m, a, b in zip(names, c, r)]) + look) + "\n</think>"  # noqa: E731
    return text(cols, rows), text(other_cols, other_rows), n


def pairs_text(rng: random.Random, pairs: int, keys: list[int], values: list[int], marks: tuple[int, int, int],
               gap: list[int] = (), two_token_keys: bool = False, value_gap: list[int] | None = None) -> tuple[list[int], list[int], list[bool]]:
    """(ids, the same ids with the first half's values redrawn, which positions hold a queried value). `gap`: filler ids
    written between every key and its value (the listing's "is in column" between a name and its digit);
    `two_token_keys`: each key two ids, one of `keys[:8]` then one of `keys[8:11]`, distinct pairs within a text (the
    listing's colour and shape, which objects share); `value_gap` (None: one value per key): a second value per key,
    after the first and these filler ids (the listing's ", row" between a column and its row)."""
    start, sep, query = marks
    if two_token_keys:
        ks = [list(c) for c in rng.sample([(a, b) for a in keys[:8] for b in keys[8:11]], pairs)]
    else:
        ks = [[k] for k in rng.sample(keys, pairs)]
    vs, others = [rng.choice(values) for _ in ks], [rng.choice(values) for _ in ks]
    second = value_gap is not None
    v2s, o2s = ([rng.choice(values) for _ in ks], [rng.choice(values) for _ in ks]) if second else (vs, others)
    order = rng.sample(range(pairs), pairs)
    line = lambda k, v, w: [*k, *gap, v, *([*value_gap, w] if second else []), sep]  # noqa: E731
    head = lambda v, w: [start] + [t for k, x, y in zip(ks, v, w) for t in line(k, x, y)] + [query]  # noqa: E731
    tail = [t for i in order for t in line(ks[i], vs[i], v2s[i])]
    scored = lambda k: [False] * (len(k) + len(gap)) + [True] + ([False] * len(value_gap) + [True] if second else []) + [False]  # noqa: E731
    mask = [False] * len(head(vs, v2s)) + [m for i in order for m in scored(ks[i])]
    return head(vs, v2s) + tail, head(others, o2s) + tail, mask


def key_blind(pairs: int, values: int) -> list[float]:
    """Per query, the accuracy of a model that ignores the keys and answers the most common value among the pairs not yet
    queried: E[count of the most common of r values drawn uniformly from `values`] / r, r = pairs, pairs - 1, ..., 1
    (the queried pair is a uniform one of the r left, so the answer is right with that count's share)."""
    from functools import lru_cache
    from math import comb

    @lru_cache(None)
    def ways(slots: int, left: int, cap: int) -> int:
        """Sequences of `left` draws over `slots` values in which no value comes more than `cap` times."""
        if slots == 0:
            return int(left == 0)
        return sum(comb(left, k) * ways(slots - 1, left - k, cap) for k in range(min(cap, left) + 1))

    def expected_max(r: int) -> float:  # E[max count] = sum over m of P(max count >= m)
        return sum(1 - ways(values, r, m - 1) / values**r for m in range(1, r + 1))

    return [expected_max(r) / r for r in range(pairs, 0, -1)]


def name_blind(ids, listing, looked, column):
    """The accuracy of answering each look-up digit with the most common digit of its kind (column or row; ties: the
    smallest) in its own text's listing: masks over `ids` (rows, tokens) from `listing_probe.reading_parts` and
    `perceive.reading_digits`. What a model gets that reads the listing but never matches a name."""
    import torch

    hits = total = 0
    for b in range(ids.shape[0]):
        for kind in (column[b], ~column[b]):
            said = ids[b][looked[b] & kind]
            if said.numel():
                mode = torch.mode(ids[b][listing[b] & kind]).values
                hits += int((said == mode).sum())
                total += said.numel()
    return hits / total if total else float("nan")


def load_init(path: Path, vocab: int):
    """The model `--save` wrote, checked against the tokenizer's size (the pairs and the look-ups share one vocabulary)."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(path)
    have = model.get_input_embeddings().num_embeddings
    if have != vocab:
        raise SystemExit(f"--init {path}: its vocabulary has {have} ids, this tokenizer {vocab}: save it with the same --cache-dir and model shape")
    return model


def first_of(mask):
    """The first marked position of each row of a (rows, tokens) bool mask: the first query's value, the only one that
    elimination (the values of the pairs not yet queried) cannot give."""
    return mask & (mask.cumsum(1) == 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="lookup", choices=("lookup", "pairs"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (the warm-up's, experiment=tiny_m2's perceive.module.lr)")
    ap.add_argument("--locate", type=float, default=0.5, help="lookup: share of texts with look-ups (the warm-up's 0.5)")
    ap.add_argument("--names", default="few", choices=("few", "all"), help="lookup: ask for 1 or 2 objects (the warm-up's) or 1 to all")
    ap.add_argument("--line", default="words", choices=("words", "colon"), help="lookup: the warm-up's reading line, or `colon_line` (digits closer to the name)")
    ap.add_argument("--unique-colours", action="store_true", help="lookup: every object of a listing its own colour (the colour alone names it)")
    ap.add_argument("--gap", type=int, default=0, help="pairs: filler ids between each key and its value (the listing has 4: 'is in column', space)")
    ap.add_argument("--key-tokens", type=int, default=1, choices=(1, 2), help="pairs: ids per key (2: colour-like x shape-like, 8 x 3)")
    ap.add_argument("--values-per-key", type=int, default=1, choices=(1, 2), help="pairs: 2 writes a second value after the first (a column, then a row)")
    ap.add_argument("--value-gap", type=int, default=0, help="pairs, --values-per-key 2: filler ids between the two values (the listing has 3: ',', 'row', space)")
    ap.add_argument("--pairs", type=int, default=5, help="pairs: key-value pairs per text")
    ap.add_argument("--keys", type=int, default=24, help="pairs: distinct keys (the listing's 8 colours x 3 shapes)")
    ap.add_argument("--values", type=int, default=9, help="pairs: distinct values")
    ap.add_argument("--layers", type=int, default=None, help="model.tiny.num_hidden_layers (default: the config's)")
    ap.add_argument("--hidden", type=int, default=None, help="model.tiny.hidden_size, with the MLP at the config's ratio")
    ap.add_argument("--heads", type=int, default=None, help="model.tiny.num_attention_heads")
    ap.add_argument("--kv-heads", type=int, default=None, help="model.tiny.num_key_value_heads")
    ap.add_argument("--eval", type=int, default=128, help="held-out texts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "m2r", help="where the tiny model's tokenizer is kept (paths.cache_dir)")
    ap.add_argument("--out", type=Path, default=None, help="write the evaluations as JSON here")
    ap.add_argument("--stop-at", type=int, default=None, help="stop after this many steps (the schedule still runs over --steps)")
    ap.add_argument("--save", type=Path, default=None, help="save the trained model here (a Hugging Face folder)")
    ap.add_argument("--init", type=Path, default=None, help="start from a model --save wrote (e.g. one that has bound on the pairs) instead of random weights")
    args = ap.parse_args(argv)
    if args.steps < 8 or args.batch < 1 or args.eval < 1:
        ap.error("--steps must be >= 8 (eight evaluations), --batch and --eval >= 1")
    if args.stop_at is not None and not 1 <= args.stop_at <= args.steps:
        ap.error(f"--stop-at {args.stop_at}: give 1 to --steps ({args.steps})")
    if args.init is not None and not (args.init / "config.json").exists():
        ap.error(f"--init {args.init}: no model there (give a folder that --save wrote)")
    if not 0 <= args.locate <= 1:
        ap.error(f"--locate {args.locate}: a share, 0 to 1")
    if args.task == "pairs" and not (1 <= args.pairs <= args.keys and args.values >= 2):
        ap.error(f"--pairs {args.pairs} --keys {args.keys} --values {args.values}: need 1 <= pairs <= keys and values >= 2")
    for k in ("gap", "key_tokens", "values_per_key", "value_gap") if args.task == "lookup" else ("line", "unique_colours"):  # the shape options of the other task
        if getattr(args, k) != ap.get_default(k):
            ap.error(f"--{k.replace('_', '-')} is an option of --task {'pairs' if args.task == 'lookup' else 'lookup'}; drop it or change --task")
    if not 0 <= args.gap <= 28 or not 0 <= args.value_gap <= 60:
        ap.error(f"--gap {args.gap} --value-gap {args.value_gap}: 0 to 28 and 0 to 60 filler ids (ids 12 on and 40 on, below the keys' 100)")
    if args.value_gap and args.values_per_key != 2:
        ap.error(f"--value-gap {args.value_gap} goes between two values: add --values-per-key 2")
    if args.key_tokens == 2 and not (args.keys >= 11 and args.pairs <= 24):
        ap.error(f"--key-tokens 2 --keys {args.keys} --pairs {args.pairs}: two-id keys draw from 8 x 3 of the first 11 keys; give --keys >= 11 and --pairs <= 24")

    import torch
    from omegaconf import OmegaConf
    from transformers import get_scheduler

    from m2r.config import ModelConfig
    from m2r.data.perceive import reading_digits
    from m2r.model.load import build_model, load_processor
    from m2r.modules.sft import decay_groups

    cfg = OmegaConf.structured(ModelConfig())
    tiny = {k: v for k, v in (("num_hidden_layers", args.layers), ("num_attention_heads", args.heads), ("num_key_value_heads", args.kv_heads)) if v is not None}
    if args.hidden is not None:
        tiny |= {"hidden_size": args.hidden, "intermediate_size": args.hidden * cfg.tiny.intermediate_size // cfg.tiny.hidden_size}
    cfg = OmegaConf.to_object(OmegaConf.merge(cfg, {"tiny": tiny}))
    if cfg.tiny.hidden_size % cfg.tiny.num_attention_heads or cfg.tiny.num_attention_heads % cfg.tiny.num_key_value_heads:
        ap.error(f"--hidden {cfg.tiny.hidden_size} --heads {cfg.tiny.num_attention_heads} --kv-heads {cfg.tiny.num_key_value_heads}: "
                 "the width must divide into the heads, and the heads into the key/value heads")
    processor = load_processor(cfg, str(args.cache_dir))
    tok = processor.tokenizer
    torch.manual_seed(args.seed)
    model = build_model(cfg, processor) if args.init is None else load_init(args.init, len(tok))
    opt = torch.optim.AdamW(decay_groups(model, 0.01), lr=args.lr)  # the warm-up's SFTModule optimizer and schedule
    sched = get_scheduler("cosine", opt, num_warmup_steps=20, num_training_steps=args.steps)

    def pack(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tok.pad_token_id)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])

    vocab = len(tok)
    if args.task == "pairs" and 100 + args.keys + args.values > vocab:
        ap.error(f"--keys {args.keys} --values {args.values}: the tokenizer has {vocab} ids and the pairs draw from ids 100 on; ask for fewer")
    ids_pool = list(range(100, vocab))
    key_ids, value_ids, marks = ids_pool[: args.keys], ids_pool[args.keys : args.keys + args.values], (tok.eos_token_id, 10, 11)

    def batch(rng: random.Random, n: int, scored: bool = True):
        """(ids, redrawn ids, attention mask, recalled-token mask, listing mask (lookup) or first-query mask (pairs)) for n
        texts; (ids, attention mask) alone for a training batch (`scored=False`)."""
        if args.task == "lookup":
            made = [lookup_text(rng, args.locate, args.names == "all", args.line, args.unique_colours) for _ in range(n)]
            ids, att = pack([tok(t, add_special_tokens=False)["input_ids"] for t, _, _ in made])
            if not scored:
                return ids, att
            redrawn, _ = pack([tok(t, add_special_tokens=False)["input_ids"] for _, t, _ in made])
            listing, looked = reading_parts(ids, tok, [k for _, _, k in made])
            return ids, redrawn, att, looked, listing
        value_gap = list(range(40, 40 + args.value_gap)) if args.values_per_key == 2 else None
        made = [pairs_text(rng, args.pairs, key_ids, value_ids, marks, list(range(12, 12 + args.gap)), args.key_tokens == 2, value_gap) for _ in range(n)]
        ids, att = pack([a for a, _, _ in made])
        if not scored:
            return ids, att
        redrawn, _ = pack([b for _, b, _ in made])
        recalled = torch.zeros_like(ids, dtype=torch.bool)
        for i, (_, _, m) in enumerate(made):
            recalled[i, : len(m)] = torch.tensor(m)
        return ids, redrawn, att, recalled, first_of(recalled)

    held = batch(random.Random(f"recall-probe/held-out/{args.seed}"), args.eval)
    if not bool(held[3].any()):
        ap.error("the held-out texts hold nothing to recall (--locate 0?)")
    if args.task == "lookup":
        reference = {"name_blind": round(name_blind(held[0], held[4], held[3], reading_digits(held[0], tok)[0]), 4)}
    else:
        per_query = key_blind(args.pairs, args.values)
        reference = {"key_blind_first": round(per_query[0], 4)}
        if args.values_per_key == 1:  # a second value can be copied after its first without matching the key: only the first query's line holds
            reference = {"key_blind": round(sum(per_query) / len(per_query), 4), **reference}
    print("  ".join(f"{k} {v}" for k, v in reference.items()), flush=True)

    def evaluate() -> dict[str, float]:
        ids, redrawn, att, recalled, listing = held  # pairs: `listing` is the first query's value
        model.eval()
        out = {}
        with torch.no_grad():
            for name, x in (("", ids), ("_redrawn", redrawn)):
                right = model(input_ids=x, attention_mask=att).logits[:, :-1].argmax(-1) == ids[:, 1:]
                out[f"lookup_acc{name}"] = float((right & recalled[:, 1:]).sum() / recalled[:, 1:].sum())
                if name == "" and bool(listing.any()):
                    out["listing_acc" if args.task == "lookup" else "first_acc"] = float((right & listing[:, 1:]).sum() / listing[:, 1:].sum())
        model.train()
        return out

    rng, log, start = random.Random(args.seed), [], time.time()
    model.train()
    last = args.stop_at or args.steps
    for step in range(1, last + 1):
        ids, att = batch(rng, args.batch, scored=False)
        loss = model(input_ids=ids, attention_mask=att, labels=ids.masked_fill(att == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % (args.steps // 8) == 0 or step == last:
            row = {"step": step, "loss": round(float(loss.detach()), 4), **{k: round(v, 4) for k, v in evaluate().items()}, "seconds": round(time.time() - start, 1)}
            log.append(row)
            print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    if args.save is not None:
        model.save_pretrained(args.save)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "reference": reference, "evaluations": log}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
