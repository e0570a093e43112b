"""Generator ground truth, checked by routes that do not go through the generators' own code:
geometry recomputed here from the scene annotation, a projection written here from scratch,
and counts read off the rendered pixels."""

from __future__ import annotations

import io
import math
import random
import re

import numpy as np
import pytest
from PIL import Image

from m2r.data.scene import PALETTE, Camera, Scene, SceneObject, render, top_shade
from m2r.data.schema import LETTERS
from m2r.data.tasks import TASKS, count_question, generate
from m2r.data.shards import image_bytes

N = 25  # samples per task per check


def samples(task: str, n: int = N, mc_ratio: float = 0.0):
    return [generate(task, i, seed=7, split="test", image_size=168, mc_ratio=mc_ratio) for i in range(n)]


def objects(meta: dict) -> dict[str, dict]:
    return {f"{o['colour']} {o['shape']}": o for o in meta["objects"]}


def chosen(sample) -> str:
    return sample.choices[LETTERS.index(sample.answer)]


def my_projection(meta: dict, x: float, y: float, z: float) -> tuple[float, float]:
    """Pinhole projection written independently: rotate the world about the x axis by the pitch."""
    cam = meta["camera"]
    t = math.radians(cam["pitch_deg"])
    rot = np.array([[1, 0, 0], [0, -math.cos(t), -math.sin(t)], [0, -math.sin(t), math.cos(t)]])  # rows: right, down, forward
    xc, yc, zc = rot @ np.array([x, y - cam["height"], z])
    f = (cam["image_size"] / 2) / math.tan(math.radians(cam["hfov_deg"] / 2))
    return f * xc / zc + cam["image_size"] / 2, f * yc / zc + cam["image_size"] / 2


def test_abs_distance_matches_annotation():
    for s, _ in samples("spatial/abs_distance"):
        obj = objects(s.meta)
        a, b = obj[s.meta["a"]], obj[s.meta["b"]]
        assert float(s.answer) == pytest.approx(math.dist((a["x"], a["z"]), (b["x"], b["z"])), abs=0.006)


def test_depth_answer_is_nearer_to_camera():
    for s, _ in samples("spatial/depth"):
        obj, h = objects(s.meta), s.meta["camera"]["height"]
        dist = {n: math.dist((o["x"], o["height"] / 2, o["z"]), (0, h, 0)) for n, o in obj.items()}
        other = [c for c in s.choices if c != chosen(s)][0]
        assert dist[chosen(s)] < dist[other]


def test_relation_agrees_with_independent_projection():
    for s, _ in samples("spatial/relation"):
        obj = objects(s.meta)
        pa = my_projection(s.meta, obj[s.meta["a"]]["x"], obj[s.meta["a"]]["height"] / 2, obj[s.meta["a"]]["z"])
        pb = my_projection(s.meta, obj[s.meta["b"]]["x"], obj[s.meta["b"]]["height"] / 2, obj[s.meta["b"]]["z"])
        expected = {"left": pa[0] < pb[0], "right": pa[0] > pb[0], "above": pa[1] < pb[1], "below": pa[1] > pb[1]}
        assert expected[chosen(s)], (s.question, chosen(s), pa, pb)


def cell_of(t: float, size: int = 168) -> int:  # the listing's cell: thirds since EMBEDDED_VERSION 6
    return min(3, max(1, int(t * 3 // size) + 1))


def test_relation_and_depth_are_decided_by_the_listed_readings():
    """The traces open with every object's column and row, and the two objects asked about differ in the reading that
    decides the answer (relation: column, or row for above/below; depth: row, the lower one the nearer)."""
    for s, _ in samples("spatial/relation") + samples("spatial/depth"):
        obj = objects(s.meta)
        read = {n: tuple(cell_of(t) for t in my_projection(s.meta, o["x"], o["height"] / 2, o["z"])) for n, o in obj.items()}
        listed = re.findall(r"^\d+\. The (\w+ \w+) is in column ([1-3]), row ([1-3])\.$", s.cot, flags=re.M)
        looked = re.findall(r"^(?:([AB]): )?The (\w+ \w+) is in column ([1-3]), row ([1-3])\.$", s.cot, flags=re.M)
        assert [(n, (int(c), int(r))) for _, n, c, r in looked] == [(n, read[n]) for n in (s.meta["a"], s.meta["b"])]  # the question's objects, looked up
        assert [x for x, *_ in looked] == (["A", "B"] if s.task == "spatial/depth" else ["", ""])  # depth's options (the objects) by their letters
        assert [(n, (int(c), int(r))) for n, c, r in listed] == sorted(((n, read[n]) for n in obj), key=lambda t: my_projection(s.meta, obj[t[0]]["x"], obj[t[0]]["height"] / 2, obj[t[0]]["z"])[0])
        if s.task == "spatial/relation":
            (ca, ra), (cb, rb) = read[s.meta["a"]], read[s.meta["b"]]
            want = {"left": ca < cb, "right": ca > cb, "above": ca == cb and ra < rb, "below": ca == cb and ra > rb}
            assert want[chosen(s)], (s.question, chosen(s), read)
        else:
            other = [c for c in s.choices if c != chosen(s)][0]
            assert read[chosen(s)][1] > read[other][1]  # the nearer is the lower in the image
            ra, rb = (read[n][1] for n in s.choices)  # the comparison in option order decides the letter
            assert f"Row {ra} {'>' if ra > rb else '<'} row {rb}, so {s.answer} is lower and closer: the {chosen(s)}." in s.cot


def read_cells(s) -> dict[str, tuple[int, int]]:
    obj = objects(s.meta)
    return {n: tuple(cell_of(t) for t in my_projection(s.meta, o["x"], o["height"] / 2, o["z"])) for n, o in obj.items()}


def test_rel_distance_and_rel_direction_are_decided_by_the_listed_readings():
    """The answer follows from the readings of the listing alone (recomputed here from an independent projection):
    rel_distance's nearer object is fewer columns plus rows from the reference; rel_direction's side is the sign of the
    cross product with columns across and rows up the image. The trace states those sums and that product."""
    for s, _ in samples("spatial/rel_distance"):
        cell = read_cells(s)
        (cr, rr) = cell[s.meta["ref"]]
        steps = {n: abs(cell[n][0] - cr) + abs(cell[n][1] - rr) for n in s.choices}
        other = [c for c in s.choices if c != chosen(s)][0]
        assert steps[chosen(s)] < steps[other], (s.question, cell)
        a, b = s.choices  # in option order, the letter decided by the sign
        assert f"{steps[a]} {'<' if steps[a] < steps[b] else '>'} {steps[b]}, so {s.answer} is closer to the {s.meta['ref']}: the {chosen(s)}." in s.cot
        # the reference looked up unlabelled, then each option by its letter, then each option's steps by its letter
        looked = re.findall(r"^(?:([AB]): )?The (\w+ \w+) is in column ([1-3]), row ([1-3])\.$", s.cot, flags=re.M)
        assert [(x, n, (int(c), int(r))) for x, n, c, r in looked] == [("", s.meta["ref"], (cr, rr)), ("A", a, cell[a]), ("B", b, cell[b])]
        for x, n in zip("AB", s.choices):
            dc, dr = abs(cell[n][0] - cr), abs(cell[n][1] - rr)
            line = f"{x}: {dc} column{'s' * (dc != 1)} and {dr} row{'s' * (dr != 1)} from the {s.meta['ref']}: {dc} + {dr} = {steps[n]}."
            assert line in s.cot, (line, s.cot)
    for s, _ in samples("spatial/rel_direction"):
        cell = read_cells(s)
        (c1, r1), (c2, r2), (c3, r3) = cell[s.meta["stand"]], cell[s.meta["face"]], cell[s.meta["target"]]
        product = (c2 - c1) * (r1 - r3) - (r1 - r2) * (c3 - c1)
        assert product != 0 and chosen(s) == ("right" if product < 0 else "left"), (s.question, cell)
        assert f" = {product}, " in s.cot


def test_rel_distance_answer_is_nearer_to_reference():
    for s, _ in samples("spatial/rel_distance"):
        obj = objects(s.meta)
        r = obj[s.meta["ref"]]
        d = {n: math.dist((r["x"], r["z"]), (obj[n]["x"], obj[n]["z"])) for n in s.choices}
        assert d[chosen(s)] == min(d.values())


def test_rel_direction_by_heading_angle():
    for s, _ in samples("spatial/rel_direction"):
        obj = objects(s.meta)
        a, b, c = obj[s.meta["stand"]], obj[s.meta["face"]], obj[s.meta["target"]]
        # Heading angles measured from +x towards +z (seen from above, +z away from the camera):
        # a target at a smaller angle than the facing direction is clockwise of it, i.e. on the right.
        face = math.atan2(b["z"] - a["z"], b["x"] - a["x"])
        tgt = math.atan2(c["z"] - a["z"], c["x"] - a["x"])
        turn = (tgt - face + math.pi) % (2 * math.pi) - math.pi
        assert chosen(s) == ("right" if turn < 0 else "left")


def test_obj_size_and_room_size_from_annotation():
    for s, _ in samples("spatial/obj_size"):
        o = objects(s.meta)[s.meta["object"]]
        assert int(s.answer) == round(100 * max(o["width"], o["height"], o["depth"]))
    for s, _ in samples("spatial/room_size"):
        assert float(s.answer) == pytest.approx(s.meta["room"]["width"] * s.meta["room"]["depth"], abs=0.006)


def test_general_tasks_from_annotation():
    for s, _ in samples("general/chart"):
        v = dict(zip(s.meta["labels"], s.meta["values"]))
        q = s.question
        if s.meta["query"] == "max":
            assert int(s.answer) == max(v.values())
        elif s.meta["query"] == "diff":
            assert int(s.answer) == max(v.values()) - min(v.values())
        else:
            x, y = re.findall(r"bars (\w) and (\w)", q)[0]
            assert int(s.answer) == v[x] + v[y]
    for s, _ in samples("general/arithmetic"):
        assert int(s.answer) == sum(n for sh, n in zip(s.meta["shapes"], s.meta["numbers"]) if sh == s.meta["target"])
    for s, _ in samples("general/geometry"):
        m = s.meta
        expected = {
            ("rectangle", "area"): lambda: m["a"] * m["b"], ("rectangle", "perimeter"): lambda: 2 * (m["a"] + m["b"]),
            ("triangle", "area"): lambda: m["a"] * m["b"] / 2, ("triangle", "hypotenuse"): lambda: math.sqrt(m["a"] ** 2 + m["b"] ** 2),
            ("circle", "area"): lambda: math.pi * m["r"] ** 2, ("circle", "circumference"): lambda: 2 * math.pi * m["r"],
        }[(m["shape"], m["measure"])]()
        assert float(s.answer) == pytest.approx(expected, abs=0.006)


def colours_in(img: Image.Image) -> set[str]:
    px = np.asarray(img.convert("RGB")).reshape(-1, 3)
    present = {tuple(p) for p in np.unique(px, axis=0)}
    return {name for name, rgb in PALETTE.items() if rgb in present or top_shade(rgb) in present}


def test_count_equals_objects_seen_in_render():
    """A scene placed here with one object per colour: the count answer equals the colours in the PNG."""
    rng = random.Random(3)
    for trial in range(10):
        n = rng.randint(2, 7)
        cam = Camera(height=1.6, pitch_deg=28, image_size=168)
        scene = Scene(camera=cam, room_width=6.0, room_depth=5.0, room_near=1.2)
        colours = rng.sample(list(PALETTE), n)
        for k, colour in enumerate(colours):
            # Spread across the view so nothing hides anything.
            x = -1.5 + 3.0 * k / max(1, n - 1)
            scene.objects.append(SceneObject(colour, rng.choice(["cube", "sphere", "cylinder"]), x, 3.0 + 0.3 * (k % 2), 0.3, 0.4, 0.3))
        img, _ = render(scene)
        png = Image.open(io.BytesIO(image_bytes(img)))
        sample = count_question(random.Random(trial), scene, mc=False, kind="all")
        assert int(sample.answer) == len(colours_in(png)) == n


def test_generated_count_images_show_every_counted_colour():
    for s, (img,) in samples("spatial/count"):
        seen = colours_in(img)
        assert {m.split()[0] for m in s.meta["matches"]} <= seen
        assert int(s.answer) == len(s.meta["matches"])


@pytest.mark.parametrize("task", list(TASKS))
def test_trace_format_and_boxed_answer(task):
    for s, imgs in samples(task, n=8, mc_ratio=0.5):
        m = re.fullmatch(r"<think>\n(.+)\n</think>\n<answer>\n(.+)\n</answer>", s.cot, re.S)
        assert m, s.cot
        assert "Let me verify" in m.group(1)
        assert re.findall(r"\\boxed\{([^}]*)\}", m.group(2))[-1] == s.answer
        assert len(imgs) == len(s.images)


def test_generation_is_seeded_and_reproducible():
    a, ia = generate("spatial/abs_distance", 3, seed=1, split="train", image_size=168, mc_ratio=0.3)
    b, ib = generate("spatial/abs_distance", 3, seed=1, split="train", image_size=168, mc_ratio=0.3)
    c, _ = generate("spatial/abs_distance", 3, seed=2, split="train", image_size=168, mc_ratio=0.3)
    assert a.to_dict() == b.to_dict() and image_bytes(ia[0]) == image_bytes(ib[0])
    assert a.to_dict() != c.to_dict()
    assert "." not in a.id


def test_the_default_config_lists_every_embedded_task():
    """conf/data/synthetic.yaml generates every embedded task, the camera walks included (tests count on N_TASKS)."""
    from omegaconf import OmegaConf

    from conftest import CONF, N_TASKS
    from m2r.data.tasks import all_tasks

    listed = list(OmegaConf.load(CONF / "data" / "synthetic.yaml").tasks)
    assert sorted(listed) == sorted(all_tasks()) and len(listed) == N_TASKS


def test_word_problems_are_valid_for_every_seed():
    """Every draw is a valid sample with a count of books left >= 1 (seed 1 once asked for 2 x 3 - 10 and offered one option)."""
    from m2r.data.schema import validate_sample

    for seed in range(4):
        for i in range(300):
            sample, media = generate("general/word_problem", i, seed, "train", 168, 0.5)
            validate_sample(sample, media, where="test", require_cot=True)
            m = sample.meta
            assert m["a"] * m["b"] - m["c"] >= 1


@pytest.mark.parametrize("yaw", [0.0, 180.0])
def test_floor_is_lit_from_the_left_wall_in_world_space(yaw):
    """The floor darkens with world x (a window in the left wall), whichever way the camera looks; objects keep their exact colours."""
    from m2r.data.scene import FLOOR_LIGHT, FLOOR_RGB, WALL_RGB

    cam = Camera(height=1.5, pitch_deg=30, image_size=168, yaw_deg=yaw, z=0.0 if yaw == 0 else 6.0)
    scene = Scene(camera=cam, room_width=4.0, room_depth=4.0, room_near=1.2)
    cube = SceneObject("red", "cube", 0.0, 3.2, 0.5, 0.5, 0.5)
    scene.objects.append(cube)
    px = np.asarray(render(scene)[0]).astype(float)
    floor = ~(px == WALL_RGB).all(-1) & ~(px == PALETTE["red"]).all(-1) & ~(px == top_shade(PALETTE["red"])).all(-1)
    rows = np.nonzero(floor.any(1))[0]
    row = px[rows[len(rows) // 2]]
    cols = np.nonzero(floor[rows[len(rows) // 2]])[0]
    left, right = row[cols[: len(cols) // 4], 0].mean(), row[cols[-len(cols) // 4 :], 0].mean()
    if yaw == 0:  # the left of the image is the room's left: light
        assert left > right + 20
    else:  # looking back, the room's left wall is on the right of the image
        assert right > left + 20
    brightest = FLOOR_RGB[0] * max(FLOOR_LIGHT)
    assert px[floor][:, 0].max() <= brightest + 1 and px[floor][:, 0].min() >= FLOOR_RGB[0] * min(FLOOR_LIGHT) * 0.8 - 1
    assert ((px == PALETTE["red"]).all(-1) | (px == top_shade(PALETTE["red"])).all(-1)).sum() > 100


def test_floor_light_follows_world_x_for_a_turned_and_moved_camera():
    """Floor points projected by the camera's own forward model carry the gain of their world x (any yaw, any position)."""
    from m2r.data.scene import FLOOR_LIGHT, FLOOR_RGB

    cam = Camera(height=1.4, pitch_deg=28, image_size=168, yaw_deg=63.0, x=-0.9, z=0.6)
    scene = Scene(camera=cam, room_width=6.0, room_depth=6.0, room_near=-1.5)
    px = np.asarray(render(scene)[0]).astype(float)
    rng, checked = random.Random(0), 0
    for _ in range(400):
        x, z = math.floor(rng.uniform(-3, 3)) + rng.uniform(0.3, 0.7), math.floor(rng.uniform(-1.5, 4.5)) + rng.uniform(0.3, 0.7)  # off the grid
        if not (-2.6 < x < 2.6 and -1.0 < z < 4.0) or cam.to_camera(np.array([[x, 0.0, z]]))[0, 2] < 0.5:  # clear of the floor's edges
            continue
        u, v = cam.project(np.array([[x, 0.0, z]]))[0]
        if not (1 <= u < 167 and 1 <= v < 167):
            continue
        gain = FLOOR_LIGHT[0] + (FLOOR_LIGHT[1] - FLOOR_LIGHT[0]) * (x + 3.0) / 6.0
        got = px[int(v), int(u)]
        assert np.abs(got - np.array(FLOOR_RGB) * gain).max() <= 4, (x, z, got, np.array(FLOOR_RGB) * gain)
        checked += 1
    assert checked > 50


def test_build_key_follows_the_generators_version(monkeypatch):
    """Shards of older generators (e.g. the unlit floor) are rebuilt, not reused: the version is in the build key."""
    from m2r.config import DataConfig
    from m2r.data import tasks
    from m2r.data.build import build_key

    before = build_key(DataConfig(), 0)
    monkeypatch.setattr(tasks, "EMBEDDED_VERSION", tasks.EMBEDDED_VERSION + 1)
    assert build_key(DataConfig(), 0) != before
