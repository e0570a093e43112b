"""Embedded task generators: spatial questions on simulated scenes and rendered visual math.

Every generator takes its own `random.Random` and returns a `Sample` (id filled in by the
caller) with exact ground truth, its images, and a templated reasoning trace in the M2 response
format (`<think>...</think><answer>... \\boxed{...}</answer>`). The traces state the quantities
read off the figure, compute the answer, and re-check it, so the quality scorer has structure,
steps and a verification to find.

Spatial tasks mirror CV-Bench (count, relation, depth, relative distance) and VSI-Bench (relative
direction, absolute distance, object size, room size); general tasks are geometry measures,
bar-chart reading, arithmetic on figures (free-form or multiple choice), and text-only word
problems, which the paper mixes into SFT.
"""

from __future__ import annotations

import math
import random
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from m2r.data.scene import Scene, SceneObject, sample_scene
from m2r.data.schema import LETTERS, Sample

Generated = tuple[Sample, list[Image.Image]]


def fmt(x: float, nd: int = 2) -> str:
    """A number as the answer string: at most `nd` decimals, no trailing zeros."""
    s = f"{x:.{nd}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def trace(steps: list[str], check: str, final: str, boxed: str) -> str:
    body = "\n".join(steps)
    return f"<think>\n{body}\nLet me verify: {check}\n</think>\n<answer>\n{final} \\boxed{{{boxed}}}\n</answer>"


def _as_choice(rng: random.Random, correct: str, distractors: list[str]) -> tuple[list[str], str]:
    """Shuffle the correct option among distinct distractors; returns (choices, letter)."""
    opts = [correct] + [d for d in dict.fromkeys(distractors) if d != correct][:3]
    rng.shuffle(opts)
    return opts, LETTERS[opts.index(correct)]


def _numeric(rng: random.Random, sample: Sample, value: float, nd: int, mc: bool, steps: list[str], check: str, unit: str) -> Sample:
    """Fill the answer of a numeric question, free-form or as four options."""
    ans = fmt(value, nd)
    if not mc:
        sample.answer, sample.answer_type = ans, "number"
        sample.cot = trace(steps, check, f"The answer is {ans}{unit}.", ans)
        return sample
    factors = [0.5, 0.75, 1.25, 1.5, 2.0]
    rng.shuffle(factors)
    distract = [fmt(value * f if value else f * 2, nd) for f in factors]
    if value == round(value) and nd == 0:
        distract = [str(int(round(value)) + d) for d in rng.sample([-2, -1, 1, 2, 3], 4) if int(round(value)) + d >= 0]
    sample.choices, letter = _as_choice(rng, ans, distract)
    sample.answer, sample.answer_type = letter, "choice"
    sample.cot = trace(steps, check, f"The value is {ans}{unit}, which is option {letter}.", letter)
    return sample


# ---------------------------------------------------------------------------------------------
# Spatial tasks


def _pixel(scene: Scene, obj: SceneObject) -> tuple[float, float]:
    u, v = scene.camera.project(obj.centre[None])[0]
    return float(u), float(v)


def _cell(scene: Scene, obj: SceneObject) -> tuple[int, int]:
    """(column, row) of an object in the listing: the thirds of the image its centre projects to."""
    from m2r.data.perceive import cell

    u, v = _pixel(scene, obj)
    return cell(u, scene.camera.image_size), cell(v, scene.camera.image_size)


def _cam_dist(scene: Scene, obj: SceneObject) -> float:
    return float(np.linalg.norm(obj.centre - np.array([0.0, scene.camera.height, 0.0])))


def _floor_dist(a: SceneObject, b: SceneObject) -> float:
    return math.hypot(a.x - b.x, a.z - b.z)


def _scan(scene: Scene) -> list[str]:
    """The trace's first lines on a scene: how many objects, then every object left to right with its column and row
    (thirds of the image), the listing the perception warm-up teaches (`m2r.data.perceive`), so SFT's traces build on it."""
    from m2r.data.perceive import listing

    return listing(scene)


def _find(scene: Scene, *objs: SceneObject) -> list[str]:
    """The listing's readings of the objects a question names, in the order named (`m2r.data.perceive.lookup`, which the
    perception warm-up trains on): the trace copies each name from the question and its reading from the listing."""
    from m2r.data.perceive import lookup

    return lookup(scene, [o.name for o in objs])


def _find_options(scene: Scene, *objs: SceneObject) -> list[str]:
    """`_find` for objects that are the question's options, in option order, each line led by its letter
    ("A: The red cube is in column 1, row 2."), so that the comparison that follows, written in option order, decides a
    letter without matching a name to the options."""
    return [f"{LETTERS[i]}: {line}" for i, line in enumerate(_find(scene, *objs))]


def _where(o: SceneObject) -> str:
    return f"the {o.name} stands at about x = {o.x:.2f} m, z = {o.z:.2f} m on the floor"


def count_question(rng: random.Random, scene: Scene, mc: bool, kind: str | None = None) -> Sample:
    """A counting question on `scene`: all objects, one colour, or one shape (`kind`; random if None)."""
    kind = kind or rng.choice(["all", "colour", "shape"])
    if kind == "all":
        target, match = "objects", list(scene.objects)
    elif kind == "colour":
        colour = rng.choice([o.colour for o in scene.objects])
        target, match = f"{colour} objects", [o for o in scene.objects if o.colour == colour]
    else:
        shape = rng.choice([o.shape for o in scene.objects])
        target, match = f"{shape}s", [o for o in scene.objects if o.shape == shape]
    by_u = sorted(match, key=lambda o: _pixel(scene, o)[0])
    steps = [f"I need to count the {target} in the image.", *_scan(scene), f"The {target}: " + ", ".join(f"the {o.name}" for o in by_u) + "."]
    check = f"counting again I get {len(match)} {target}."
    s = Sample(id="", task="spatial/count", question=f"How many {target} are in the image?", answer="", answer_type="number", images=["img0.png"], meta=scene.to_meta() | {"target": kind, "matches": [o.name for o in match]})
    return _numeric(rng, s, len(match), 0, mc, steps, check, "")


def spatial_count(rng: random.Random, image_size: int, mc: bool) -> Generated:
    scene, img = sample_scene(rng, image_size, n_objects=(2, 7))
    return count_question(rng, scene, mc), [img]


def spatial_relation(rng: random.Random, image_size: int, mc: bool) -> Generated:
    """Left/right or above/below between two objects a third of the image apart or more (different columns, or rows),
    so that the listing's readings decide it."""
    for _ in range(200):
        scene, img = sample_scene(rng, image_size)
        a, b = rng.sample(scene.objects, 2)
        (ca, ra), (cb, rb) = _cell(scene, a), _cell(scene, b)
        if ca != cb or ra != rb:
            break
    else:
        raise RuntimeError(f"spatial/relation: no two objects a column or a row apart in 200 scenes of {image_size} px; raise data.image_size")
    if ca != cb:
        axis, opts, correct, pa, pb, word = "horizontal", ["left", "right"], "left" if ca < cb else "right", ca, cb, "column"
        q = f"Considering the image, is the {a.name} to the left or to the right of the {b.name}?"
    else:
        axis, opts, correct, pa, pb, word = "vertical", ["above", "below"], "above" if ra < rb else "below", ra, rb, "row"
        q = f"Considering the image, is the {a.name} above or below the {b.name}?"
    relation = f"to the {correct} of" if axis == "horizontal" else correct
    steps = [*_scan(scene), *_find(scene, a, b), f"{word.capitalize()} {pa} {'<' if pa < pb else '>'} {word} {pb}, so the {a.name} is {relation} the {b.name}."]
    check = (f"the {a.name} is {correct} of the {b.name} in the listing's order, consistent with '{correct}'." if axis == "horizontal"
             else f"rows count down the image, so row {pa} is {correct} row {pb}.")
    letter = LETTERS[opts.index(correct)]
    cot = trace(steps, check, f"The {a.name} is {correct} (option {letter}).", letter)
    return Sample(id="", task="spatial/relation", question=q, answer=letter, answer_type="choice", choices=opts, images=["img0.png"], cot=cot, meta=scene.to_meta() | {"a": a.name, "b": b.name, "axis": axis}), [img]


def spatial_depth(rng: random.Random, image_size: int, mc: bool) -> Generated:
    """Which of two objects is closer to the camera, for pairs in different rows whose lower one is the nearer (objects
    stand on the floor, so the nearer sits lower in the image): the listing's rows decide it."""
    for _ in range(200):
        scene, img = sample_scene(rng, image_size)
        a, b = rng.sample(scene.objects, 2)
        da, db = _cam_dist(scene, a), _cam_dist(scene, b)
        ra, rb = _cell(scene, a)[1], _cell(scene, b)[1]
        if max(da, db) / min(da, db) > 1.15 and ra != rb and (ra > rb) == (da < db):
            break
    else:
        raise RuntimeError(f"spatial/depth: no two objects in different rows, the lower the nearer, in 200 scenes of {image_size} px; raise data.image_size")
    near = a if da < db else b
    opts = [a.name, b.name]
    letter = LETTERS[opts.index(near.name)]
    steps = [*_scan(scene), *_find_options(scene, a, b), "Both stand on the floor, so the lower one in the image is nearer the camera.",
             f"Row {ra} {'>' if ra > rb else '<'} row {rb}, so {letter} is lower and closer: the {near.name}."]
    check = f"using the floor grid, the {a.name} is about {da:.1f} m from the camera and the {b.name} about {db:.1f} m."
    cot = trace(steps, check, f"The {near.name} is closer to the camera (option {letter}).", letter)
    q = f"Which object is closer to the camera: the {a.name} or the {b.name}?"
    return Sample(id="", task="spatial/depth", question=q, answer=letter, answer_type="choice", choices=opts, images=["img0.png"], cot=cot, meta=scene.to_meta() | {"a": a.name, "b": b.name}), [img]


def _steps(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def spatial_rel_distance(rng: random.Random, image_size: int, mc: bool) -> Generated:
    """Which of two objects is closer to a third on the floor, for triples whose listed readings decide it: the nearer
    on the floor is also fewer columns plus rows from the reference in the listing (and at least 1.2 times nearer)."""
    for _ in range(200):
        scene, img = sample_scene(rng, image_size, n_objects=(3, 6))
        r, a, b = rng.sample(scene.objects, 3)
        da, db = _floor_dist(r, a), _floor_dist(r, b)
        (cr, rr), (ca, ra), (cb, rb) = _cell(scene, r), _cell(scene, a), _cell(scene, b)
        ga, gb = abs(ca - cr) + abs(ra - rr), abs(cb - cr) + abs(rb - rr)
        if max(da, db) / min(da, db) > 1.2 and ga != gb and (ga < gb) == (da < db):
            break
    else:
        raise RuntimeError(f"spatial/rel_distance: no triple whose readings decide the nearer in 200 scenes of {image_size} px; raise data.image_size")
    near, far = (a, b) if da < db else (b, a)
    opts = [a.name, b.name]
    letter = LETTERS[opts.index(near.name)]
    steps = [*_find(scene, r), *_find_options(scene, a, b)]
    steps = [*_scan(scene), *steps,
             f"A: {_steps(abs(ca - cr), 'column')} and {_steps(abs(ra - rr), 'row')} from the {r.name}: {abs(ca - cr)} + {abs(ra - rr)} = {ga}.",
             f"B: {_steps(abs(cb - cr), 'column')} and {_steps(abs(rb - rr), 'row')} from the {r.name}: {abs(cb - cr)} + {abs(rb - rr)} = {gb}.",
             f"{ga} {'<' if ga < gb else '>'} {gb}, so {letter} is closer to the {r.name}: the {near.name}."]
    check = f"on the floor the {near.name} is about {min(da, db):.1f} m from the {r.name} and the {far.name} about {max(da, db):.1f} m."
    cot = trace(steps, check, f"The {near.name} (option {letter}).", letter)
    q = f"Which object is closer to the {r.name}: the {a.name} or the {b.name}?"
    return Sample(id="", task="spatial/rel_distance", question=q, answer=letter, answer_type="choice", choices=opts, images=["img0.png"], cot=cot, meta=scene.to_meta() | {"ref": r.name, "a": a.name, "b": b.name}), [img]


def spatial_rel_direction(rng: random.Random, image_size: int, mc: bool) -> Generated:
    """Left or right of a target, standing by one object and facing another, for triples whose listed readings decide
    it: with columns across and rows up the image as a map of the floor, the sign of the cross product of the facing and
    target directions agrees with the floor's (and the target is 25 to 155 degrees off the facing direction)."""
    for _ in range(200):
        scene, img = sample_scene(rng, image_size, n_objects=(3, 6))
        a, b, c = rng.sample(scene.objects, 3)
        fx, fz = b.x - a.x, b.z - a.z
        vx, vz = c.x - a.x, c.z - a.z
        cross = fx * vz - fz * vx  # < 0: c is to the right when facing from a towards b (seen from above)
        angle = math.degrees(math.atan2(abs(cross), fx * vx + fz * vz))
        (c1, r1), (c2, r2), (c3, r3) = _cell(scene, a), _cell(scene, b), _cell(scene, c)
        f_across, f_up, t_across, t_up = c2 - c1, r1 - r2, c3 - c1, r1 - r3  # up the image is away from the camera
        listed = f_across * t_up - f_up * t_across
        if 25 < angle < 155 and listed != 0 and (listed < 0) == (cross < 0):
            break
    else:
        raise RuntimeError(f"spatial/rel_direction: no triple whose readings decide the side in 200 scenes of {image_size} px; raise data.image_size")
    side = "right" if cross < 0 else "left"
    opts = ["left", "right"]
    letter = LETTERS[opts.index(side)]
    steps = [*_scan(scene), *_find(scene, a, b, c),
             f"Towards the {b.name}: {f_across} across and {f_up} up. Towards the {c.name}: {t_across} across and {t_up} up.",
             f"{f_across} x {t_up} - {f_up} x {t_across} = {listed}, {'negative, so right' if listed < 0 else 'positive, so left'}."]
    check = f"on the floor, facing from the {a.name} towards the {b.name}, the {c.name} lies about {angle:.0f} degrees to the {side}."
    cot = trace(steps, check, f"The {c.name} is to my {side} (option {letter}).", letter)
    q = f"If I am standing by the {a.name} and facing the {b.name}, is the {c.name} to my left or to my right?"
    return Sample(id="", task="spatial/rel_direction", question=q, answer=letter, answer_type="choice", choices=opts, images=["img0.png"], cot=cot, meta=scene.to_meta() | {"stand": a.name, "face": b.name, "target": c.name}), [img]


def spatial_abs_distance(rng: random.Random, image_size: int, mc: bool) -> Generated:
    scene, img = sample_scene(rng, image_size)
    a, b = rng.sample(scene.objects, 2)
    d = _floor_dist(a, b)
    steps = [*_scan(scene), *_find(scene, a, b), _where(a).capitalize() + ".", _where(b).capitalize() + ".", f"The distance between their centres is sqrt(({a.x - b.x:.2f})^2 + ({a.z - b.z:.2f})^2) = {d:.2f} m."]
    check = f"the grid squares are 1 m, and the two objects are about {d:.1f} squares apart."
    q = f"What is the distance between the centres of the {a.name} and the {b.name}, in meters?"
    s = Sample(id="", task="spatial/abs_distance", question=q, answer="", answer_type="number", images=["img0.png"], meta=scene.to_meta() | {"a": a.name, "b": b.name})
    return _numeric(rng, s, d, 2, mc, steps, check, " m"), [img]


def spatial_obj_size(rng: random.Random, image_size: int, mc: bool) -> Generated:
    scene, img = sample_scene(rng, image_size)
    o = rng.choice(scene.objects)
    dims = {"width": o.width, "height": o.height, "depth": o.depth}
    longest = max(dims.values())
    steps = [*_scan(scene), *_find(scene, o), f"It is about {o.width * 100:.0f} cm wide, {o.height * 100:.0f} cm tall and {o.depth * 100:.0f} cm deep, judging against the 1 m floor grid.", f"Its longest dimension is {longest * 100:.0f} cm."]
    check = f"max({', '.join(f'{v * 100:.0f}' for v in dims.values())}) = {longest * 100:.0f}."
    q = f"What is the length of the longest dimension (width, height or depth) of the {o.name}, in centimeters?"
    s = Sample(id="", task="spatial/obj_size", question=q, answer="", answer_type="number", images=["img0.png"], meta=scene.to_meta() | {"object": o.name})
    return _numeric(rng, s, round(longest * 100), 0, mc, steps, check, " cm"), [img]


def spatial_room_size(rng: random.Random, image_size: int, mc: bool) -> Generated:
    scene, img = sample_scene(rng, image_size)
    area = scene.room_width * scene.room_depth
    steps = [f"The floor grid has 1 m squares; the floor is {scene.room_width:.1f} m wide and {scene.room_depth:.1f} m deep.", f"Its area is {scene.room_width:.1f} x {scene.room_depth:.1f} = {area:.2f} square meters."]
    check = f"{area:.2f} / {scene.room_width:.1f} = {scene.room_depth:.1f}."
    q = "What is the area of the floor shown in the image, in square meters?"
    s = Sample(id="", task="spatial/room_size", question=q, answer="", answer_type="number", images=["img0.png"], meta=scene.to_meta())
    return _numeric(rng, s, area, 2, mc, steps, check, " m^2"), [img]


# ---------------------------------------------------------------------------------------------
# General (visual math) tasks


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw, ImageFont.ImageFont]:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    return img, ImageDraw.Draw(img), ImageFont.load_default(size=max(10, size // 12))


def general_geometry(rng: random.Random, image_size: int, mc: bool) -> Generated:
    img, draw, font = _canvas(image_size)
    s = image_size
    kind = rng.choice(["rectangle", "triangle", "circle"])
    if kind == "rectangle":
        a, b = rng.randint(2, 15), rng.randint(2, 15)
        draw.rectangle([s * 0.2, s * 0.3, s * 0.8, s * 0.7], outline=(0, 0, 0), width=2)
        draw.text((s * 0.42, s * 0.72), f"{a} cm", fill=(0, 0, 0), font=font)
        draw.text((s * 0.82, s * 0.45), f"{b} cm", fill=(0, 0, 0), font=font)
        what = rng.choice(["area", "perimeter"])
        value = a * b if what == "area" else 2 * (a + b)
        steps = [f"The rectangle's sides are labelled {a} cm and {b} cm.", f"Its {what} is " + (f"{a} x {b} = {value}." if what == "area" else f"2 x ({a} + {b}) = {value}.")]
        check = f"{value} / {a} = {b}." if what == "area" else f"{a} + {b} + {a} + {b} = {value}."
        unit = " cm^2" if what == "area" else " cm"
        q, meta = f"What is the {what} of the rectangle, in {'square ' if what == 'area' else ''}centimeters?", {"shape": kind, "a": a, "b": b, "measure": what}
        nd = 0
    elif kind == "triangle":
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        pts = [(s * 0.2, s * 0.8), (s * 0.8, s * 0.8), (s * 0.2, s * 0.2)]
        draw.polygon(pts, outline=(0, 0, 0), width=2)
        draw.rectangle([s * 0.2, s * 0.74, s * 0.26, s * 0.8], outline=(0, 0, 0))
        draw.text((s * 0.45, s * 0.82), f"{a}", fill=(0, 0, 0), font=font)
        draw.text((s * 0.08, s * 0.48), f"{b}", fill=(0, 0, 0), font=font)
        what = rng.choice(["area", "hypotenuse"])
        value = a * b / 2 if what == "area" else math.hypot(a, b)
        steps = [f"The right triangle has legs {a} and {b}."] + ([f"Area = {a} x {b} / 2 = {fmt(value)}."] if what == "area" else [f"Hypotenuse = sqrt({a}^2 + {b}^2) = sqrt({a * a + b * b}) = {fmt(value)}."])
        check = f"{fmt(value)} x 2 / {a} = {b}." if what == "area" else f"{fmt(value)}^2 is about {a * a + b * b}."
        unit, nd = "", 2
        q, meta = f"The figure shows a right triangle with legs {a} and {b}. What is its {what}? Round to two decimals.", {"shape": kind, "a": a, "b": b, "measure": what}
    else:
        r = rng.randint(1, 10)
        draw.ellipse([s * 0.2, s * 0.2, s * 0.8, s * 0.8], outline=(0, 0, 0), width=2)
        draw.line([s * 0.5, s * 0.5, s * 0.8, s * 0.5], fill=(0, 0, 0), width=2)
        draw.text((s * 0.58, s * 0.42), f"r={r}", fill=(0, 0, 0), font=font)
        what = rng.choice(["area", "circumference"])
        value = math.pi * r * r if what == "area" else 2 * math.pi * r
        steps = [f"The circle's radius is {r}.", f"Its {what} is " + (f"pi x {r}^2 = {fmt(value)}." if what == "area" else f"2 x pi x {r} = {fmt(value)}.")]
        check = f"{fmt(value)} / pi = {fmt(value / math.pi)}."
        unit, nd = "", 2
        q, meta = f"What is the {what} of the circle? Round to two decimals.", {"shape": kind, "r": r, "measure": what}
    sample = Sample(id="", task="general/geometry", question=q, answer="", answer_type="number", images=["img0.png"], meta=meta)
    return _numeric(rng, sample, value, nd, mc, steps, check, unit), [img]


def general_chart(rng: random.Random, image_size: int, mc: bool) -> Generated:
    img, draw, font = _canvas(image_size)
    s = image_size
    n = rng.randint(3, 5)
    labels = rng.sample(["A", "B", "C", "D", "E", "F"], n)
    values = [rng.randint(1, 20) for _ in range(n)]
    base, top, left, right = s * 0.85, s * 0.15, s * 0.12, s * 0.95
    draw.line([left, top, left, base], fill=(0, 0, 0), width=1)
    draw.line([left, base, right, base], fill=(0, 0, 0), width=1)
    slot = (right - left) / n
    for i, (lab, v) in enumerate(zip(labels, values)):
        x0 = left + i * slot + slot * 0.2
        h = (base - top) * v / 20
        draw.rectangle([x0, base - h, x0 + slot * 0.6, base], fill=(70, 110, 200))
        draw.text((x0, base - h - s * 0.09), str(v), fill=(0, 0, 0), font=font)
        draw.text((x0 + slot * 0.15, base + 2), lab, fill=(0, 0, 0), font=font)
    kind = rng.choice(["max", "sum", "diff"])
    read = "The bars read " + ", ".join(f"{l} = {v}" for l, v in zip(labels, values)) + "."
    if kind == "max":
        value = max(values)
        q, steps, check = "What is the value of the tallest bar?", [read, f"The largest is {value}."], f"no other value exceeds {value}."
    elif kind == "sum":
        i, j = rng.sample(range(n), 2)
        value = values[i] + values[j]
        q, steps, check = f"What is the sum of the values of bars {labels[i]} and {labels[j]}?", [read, f"{values[i]} + {values[j]} = {value}."], f"{value} - {values[j]} = {values[i]}."
    else:
        value = max(values) - min(values)
        q, steps, check = "What is the difference between the largest and the smallest bar values?", [read, f"{max(values)} - {min(values)} = {value}."], f"{min(values)} + {value} = {max(values)}."
    sample = Sample(id="", task="general/chart", question=q, answer="", answer_type="number", images=["img0.png"], meta={"labels": labels, "values": values, "query": kind})
    return _numeric(rng, sample, value, 0, mc, steps, check, ""), [img]


def general_arithmetic(rng: random.Random, image_size: int, mc: bool) -> Generated:
    img, draw, font = _canvas(image_size)
    s = image_size
    n = rng.randint(3, 6)
    shapes = [rng.choice(["circle", "square", "triangle"]) for _ in range(n)]
    numbers = [rng.randint(1, 9) for _ in range(n)]
    cols = 3
    cell = s / cols
    for i, (shape, num) in enumerate(zip(shapes, numbers)):
        cx, cy = (i % cols + 0.5) * cell, (i // cols + 0.5) * cell + s * 0.15
        r = cell * 0.38
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(0, 0, 0), width=2)
        elif shape == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], outline=(0, 0, 0), width=2)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], outline=(0, 0, 0), width=2)
        draw.text((cx - r * 0.25, cy - r * 0.35), str(num), fill=(0, 0, 0), font=font)
    target = rng.choice(shapes)
    picked = [v for sh, v in zip(shapes, numbers) if sh == target]
    value = sum(picked)
    q = f"What is the sum of the numbers inside the {target}s?"
    steps = [f"The {target}s contain the numbers " + ", ".join(map(str, picked)) + ".", f"Their sum is {' + '.join(map(str, picked))} = {value}."]
    check = f"there are {len(picked)} {target}s and adding them again gives {value}."
    sample = Sample(id="", task="general/arithmetic", question=q, answer="", answer_type="number", images=["img0.png"], meta={"shapes": shapes, "numbers": numbers, "target": target})
    return _numeric(rng, sample, value, 0, mc, steps, check, ""), [img]


def general_word_problem(rng: random.Random, image_size: int, mc: bool) -> Generated:
    """Text-only arithmetic (no image): the paper mixes text-only reasoning data into SFT."""
    a, b = rng.randint(2, 9), rng.randint(2, 12)
    c = rng.randint(1, min(10, a * b - 1))  # at least one book stays: no negative counts (seed 1 drew 2 x 3 - 10)
    value = a * b - c
    q = f"A shelf has {a} rows with {b} books in each row. {c} books are taken away. How many books are left on the shelf?"
    steps = [f"There are {a} x {b} = {a * b} books at first.", f"After taking {c} away: {a * b} - {c} = {value}."]
    check = f"{value} + {c} = {a * b} = {a} x {b}."
    sample = Sample(id="", task="general/word_problem", question=q, answer="", answer_type="number", images=[], meta={"a": a, "b": b, "c": c})
    return _numeric(rng, sample, value, 0, mc, steps, check, " books"), []


# The embedded generators' output version: part of the build key (m2r.data.build.build_key), so shards built by
# older generators or an older renderer are rebuilt, never reused. Bump it whenever a generator or the renderer
# changes what it writes. 2: the floor lit from the left wall (scene._light_floor). 3: the scene tasks' traces open
# with every object's column and row, left to right (`_scan`). 4: relation and depth decide from those readings (pairs
# a column or row apart; depth: the lower of two objects in different rows is the nearer). 5: the listing opens with
# the count ("I see 3 objects, from left to right:") and numbers its lines, so the list has an end; rel_distance and
# rel_direction decide from the listed readings too (columns plus rows apart; the cross product on the image grid);
# every scene task restates the objects its question names with their listed readings (`_find`). 6: the readings are
# thirds of the image, not quarters (whole image tokens), and scenes spread their objects over the image's rows (a steeper
# camera, distances drawn by viewing angle: `sample_scene(spread=True)`), where v5's stood three times in four in one row.
# 7: depth and rel_distance, whose options are the question's objects, label those objects' look-ups with their option
# letters and compare them in option order ("Row 3 > row 1, so A is lower and closer"), where v6's SFT model matched
# the name it concluded with to the wrong letter about half the time (`_find_options`).
EMBEDDED_VERSION = 7

TASKS: dict[str, Callable[[random.Random, int, bool], Generated]] = {
    "spatial/count": spatial_count,
    "spatial/relation": spatial_relation,
    "spatial/depth": spatial_depth,
    "spatial/rel_distance": spatial_rel_distance,
    "spatial/rel_direction": spatial_rel_direction,
    "spatial/abs_distance": spatial_abs_distance,
    "spatial/obj_size": spatial_obj_size,
    "spatial/room_size": spatial_room_size,
    "general/geometry": general_geometry,
    "general/chart": general_chart,
    "general/arithmetic": general_arithmetic,
    "general/word_problem": general_word_problem,
}


def all_tasks() -> dict[str, Callable]:
    """Every embedded task: the still-image tasks above and the camera-walk video tasks (`walk.py`)."""
    from m2r.data.walk import VIDEO_TASKS

    return {**TASKS, **VIDEO_TASKS}


def generate(task: str, index: int, seed: int, split: str, image_size: int, mc_ratio: float, num_frames: int = 8, frame_size: int | None = None) -> Generated:
    """The `index`-th sample of `task` in `split`: a pure function of its arguments.

    Video tasks render `num_frames` frames of `frame_size` pixels (default: `image_size`)."""
    video = None if task in TASKS else all_tasks().get(task)  # walk.py imports this module: looked up when called
    if task not in TASKS and video is None:
        raise KeyError(f"unknown embedded task {task!r}; known tasks: {', '.join(all_tasks())}")
    rng = random.Random(f"{seed}/{split}/{task}/{index}")
    mc = rng.random() < mc_ratio
    sample, images = video(rng, frame_size or image_size, mc, num_frames) if video else TASKS[task](rng, image_size, mc)
    sample.id = f"{split}-{task.replace('/', '-')}-{index:06d}"
    sample.source = f"m2r-embedded/{task}"
    return sample, images
