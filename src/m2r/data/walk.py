"""Camera walks through a furnished room, and VSI-Bench's eight question types asked about them.

A room is a floor rectangle of 4-8 m per side, centred on the origin (x in [-W/2, W/2], z in
[-D/2, D/2]), with 4-8 objects of `scene.py`'s shapes standing on it. Every object has its own
colour, so a colour names one object ("the red cube") and the objects can be told apart by colour
in the frames. An object's 3D box is axis-aligned: `width` along x, `height` along y, `depth`
along z; a sphere's or cylinder's box is its bounding box, and distances are measured between
boxes. A camera at eye height walks a smooth path through the free floor (at least CLEARANCE
from every box, WALL_MARGIN from the walls) while panning about the vertical axis, so over the
walk the objects come into view one after another. `num_frames` frames are taken evenly in time
and rendered with `scene.render`; the walk lasts `(num_frames - 1) / FPS` seconds.

Conventions (shared with `scene.Camera`):
- Yaw / heading: degrees about the vertical axis, 0 along +z, positive towards +x. Facing +z,
  +x is on the right: it is drawn in the right half of the image. Seen from above, a target is
  to the right of a walker at A facing B iff (B - A) x (C - A) = fx * vz - fz * vx < 0, and the
  signed turn from heading h1 to h2 is wrapped to [-180, 180), positive = a right turn.
- Seen: an object is seen in a frame when at least `min_seen_px(frame_size)` pixels of the
  frame's id buffer (0.1% of the frame, 13 px at 112 px) are its own. Objects nearer than
  `scene.NEAR` to the camera are not drawn in that frame (the path keeps them far away anyway).
- Every object is seen in at least one frame: walks where one is not are filmed again on a new
  path, and rooms where that keeps failing are redrawn. So "the objects in this room" and "the
  objects seen in the video" are the same set, and counting counts each object once however many
  frames show it. Counting asks for a shape: colours are unique, so a colour count is always 1.

Tasks differ from VSI-Bench in that rooms are synthetic, categories are shape/colour names,
positions are object centres (rel. direction, route planning) and distances are box to box.
Numeric tasks ignore `mc` (VSI-Bench asks them free-form). Choice tasks keep margins away from
every decision boundary (distances, angles, first frames) so the truth is unambiguous.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from m2r.data.media import Video
from m2r.data.scene import PALETTE, SHAPES, Camera, Scene, SceneObject, render
from m2r.data.schema import LETTERS, Sample
from m2r.data.tasks import _as_choice, fmt, trace

FPS = 1.0  # frames per second of walking: 8 frames show a 7 s walk
CLEARANCE = 0.8  # m from the camera path to any object's box
WALL_MARGIN = 0.4  # m from the camera path to the walls
OBJECT_GAP = 0.4  # m between the boxes of two objects
SEEN_FRACTION = 0.001  # of a frame's pixels an object must cover to count as seen
SWEEP_STEP_DEG = 50.0  # most the camera pans between frames; below the 60 degree field of view, so no direction is skipped
SWEEP_MAX_DEG = 330.0  # total pan over a walk

Generated = tuple[Sample, list]


def min_seen_px(frame_size: int) -> int:
    """Pixels an object needs in a frame to count as seen there."""
    return max(4, round(SEEN_FRACTION * frame_size * frame_size))


# ---------------------------------------------------------------------------------------------
# Geometry


def heading(dx: float, dz: float) -> float:
    """Heading of the floor direction (dx, dz) in degrees: 0 along +z, 90 along +x."""
    return math.degrees(math.atan2(dx, dz))


def turn(h_from: float, h_to: float) -> float:
    """Signed turn from heading `h_from` to `h_to`, degrees in [-180, 180); positive = right."""
    return (h_to - h_from + 180.0) % 360.0 - 180.0


def bearing(stand: SceneObject, face: SceneObject, target: SceneObject) -> float:
    """Where `target` lies for someone at `stand` facing `face`: signed degrees, positive = right."""
    return turn(heading(face.x - stand.x, face.z - stand.z), heading(target.x - stand.x, target.z - stand.z))


def box_gaps(a: SceneObject, b: SceneObject) -> tuple[float, float, float]:
    """Gaps between two objects' boxes along x, y, z (0 where their extents overlap)."""
    gx = max(0.0, abs(a.x - b.x) - (a.width + b.width) / 2)
    gy = max(0.0, abs(a.height - b.height) / 2 - (a.height + b.height) / 2)  # always 0: both stand on the floor
    gz = max(0.0, abs(a.z - b.z) - (a.depth + b.depth) / 2)
    return gx, gy, gz


def box_distance(a: SceneObject, b: SceneObject) -> float:
    """Distance between the closest points of two objects' boxes, m."""
    gx, gy, gz = box_gaps(a, b)
    return math.sqrt(gx * gx + gy * gy + gz * gz)


def _point_box_distance(x: np.ndarray, z: np.ndarray, o: SceneObject) -> np.ndarray:
    """Floor distance from points (x, z) [N] to the footprint of `o`'s box."""
    return np.hypot(np.maximum(np.abs(x - o.x) - o.width / 2, 0.0), np.maximum(np.abs(z - o.z) - o.depth / 2, 0.0))


# ---------------------------------------------------------------------------------------------
# Rooms and walks


@dataclass
class Walk:
    """A room, its objects, and one camera per frame of a walk through it, with the rendered frames."""

    room_width: float  # along x, m; the floor spans [-width/2, width/2]
    room_depth: float  # along z, m; the floor spans [-depth/2, depth/2]
    objects: list[SceneObject]
    cameras: list[Camera]  # one per frame
    fps: float
    frames: list[Image.Image]
    visible_px: np.ndarray  # [F, N] pixels of object n in frame f
    min_seen_px: int

    @property
    def seen(self) -> np.ndarray:
        """[F, N] bool: object n seen in frame f."""
        return self.visible_px >= self.min_seen_px

    def first_seen(self, obj: SceneObject) -> int | None:
        """Index of the first frame that shows `obj`, None if none does."""
        col = self.seen[:, self.objects.index(obj)]
        return int(col.argmax()) if col.any() else None

    def scene(self, frame: int) -> Scene:
        """The `scene.Scene` that frame `frame` renders."""
        return Scene(camera=self.cameras[frame], room_width=self.room_width, room_depth=self.room_depth, room_near=-self.room_depth / 2, objects=self.objects)

    def to_meta(self) -> dict[str, Any]:
        return {
            "room": {"width": self.room_width, "depth": self.room_depth, "near": -self.room_depth / 2},
            "objects": [asdict(o) for o in self.objects],
            "cameras": [asdict(c) for c in self.cameras],
            "fps": self.fps,
            "visible_px": self.visible_px.tolist(),
            "min_seen_px": self.min_seen_px,
        }

    def video(self) -> tuple[dict[str, Any], Video]:
        """(the sample's `videos` entry, the `Video`)."""
        names = [f"vid0_f{i:03d}.png" for i in range(len(self.frames))]
        return {"frames": names, "fps": self.fps}, Video(list(self.frames), fps=self.fps)


def _object_size(rng: random.Random, shape: str) -> tuple[float, float, float]:
    if shape == "sphere":
        w = round(rng.uniform(0.3, 0.7), 2)
        return w, w, w
    if shape == "cylinder":
        w = round(rng.uniform(0.3, 0.6), 2)
        return w, round(rng.uniform(0.4, 1.1), 2), w
    return round(rng.uniform(0.3, 1.0), 2), round(rng.uniform(0.3, 1.0), 2), round(rng.uniform(0.3, 1.0), 2)


def sample_room(rng: random.Random, max_tries: int = 100) -> tuple[float, float, list[SceneObject]]:
    """(width, depth, objects): a 4-8 m room with 4-8 objects (more in bigger rooms), most along
    the walls like furniture, boxes at least OBJECT_GAP apart and 0.05 m off the walls."""
    for _ in range(max_tries):
        width, depth = round(rng.uniform(4.0, 8.0), 1), round(rng.uniform(4.0, 8.0), 1)
        n = rng.randint(4, max(4, min(8, int(width * depth / 5))))
        colours = rng.sample(list(PALETTE), n)
        objects: list[SceneObject] = []
        for colour in colours:
            shape = rng.choice(SHAPES)
            w, h, d = _object_size(rng, shape)
            for _try in range(50):
                xr, zr = width / 2 - w / 2 - 0.05, depth / 2 - d / 2 - 0.05
                x, z = rng.uniform(-xr, xr), rng.uniform(-zr, zr)
                if rng.random() < 0.6:  # against a wall
                    wall = rng.randrange(4)
                    gap = rng.uniform(0.0, 0.25)
                    if wall < 2:
                        x = (xr - gap) * (1 if wall else -1)
                    else:
                        z = (zr - gap) * (1 if wall == 3 else -1)
                obj = SceneObject(colour, shape, round(x, 2), round(z, 2), w, h, d)
                if all(box_distance(obj, o) >= OBJECT_GAP for o in objects):
                    objects.append(obj)
                    break
            else:
                break
        if len(objects) == n:
            return width, depth, objects
    raise RuntimeError(f"could not place objects in a room in {max_tries} tries; lower the object count or OBJECT_GAP")


def _clearance(width: float, depth: float, objects: list[SceneObject], x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """How far each floor point (x, z) [N] is from violating the path's clearances (>= 0: free)."""
    wall = np.minimum(width / 2 - np.abs(x), depth / 2 - np.abs(z)) - WALL_MARGIN
    boxes = np.min([_point_box_distance(x, z, o) for o in objects], axis=0) - CLEARANCE
    return np.minimum(wall, boxes)


def _free_point(rng: random.Random, width: float, depth: float, objects: list[SceneObject], tries: int = 50) -> np.ndarray | None:
    for _ in range(tries):
        x = rng.uniform(-width / 2 + WALL_MARGIN, width / 2 - WALL_MARGIN)
        z = rng.uniform(-depth / 2 + WALL_MARGIN, depth / 2 - WALL_MARGIN)
        if _clearance(width, depth, objects, np.array([x]), np.array([z]))[0] >= 0:
            return np.array([x, z])
    return None


def sample_path(rng: random.Random, width: float, depth: float, objects: list[SceneObject], num_points: int, tries: int = 40) -> np.ndarray | None:
    """`num_points` points [P, 2] (x, z) evenly spaced along a smooth free path of at least 1.5 m:
    a quadratic Bezier curve from a start through a middle point to an end, all in free floor."""
    t = np.linspace(0.0, 1.0, 64)[:, None]
    for _ in range(tries):
        pts = [_free_point(rng, width, depth, objects) for _ in range(3)]
        if any(p is None for p in pts):
            return None
        start, mid, end = pts
        ctrl = 2 * mid - (start + end) / 2  # the curve passes through `mid` at t = 1/2
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end  # [64, 2]
        seg = np.hypot(*np.diff(curve, axis=0).T)
        length = seg.sum()
        if length < 1.5 or (_clearance(width, depth, objects, curve[:, 0], curve[:, 1]) < 0).any():
            continue
        # Resample by arc length so the camera walks at constant speed.
        s = np.concatenate([[0.0], np.cumsum(seg)])
        targets = np.linspace(0.0, length, num_points)
        return np.stack([np.interp(targets, s, curve[:, 0]), np.interp(targets, s, curve[:, 1])], axis=1)
    return None


def film(rng: random.Random, width: float, depth: float, objects: list[SceneObject], frame_size: int, num_frames: int, tries: int = 4) -> Walk | None:
    """Walk a camera through the room and render it; None if no path shows every object."""
    thr = min_seen_px(frame_size)
    for _ in range(tries):
        path = sample_path(rng, width, depth, objects, num_frames)
        if path is None:
            return None
        height, pitch = round(rng.uniform(1.4, 1.7), 2), round(rng.uniform(20.0, 30.0), 1)
        step = min(SWEEP_STEP_DEG, SWEEP_MAX_DEG / max(1, num_frames - 1))
        yaw0, direction = rng.uniform(-180.0, 180.0), rng.choice([-1, 1])
        cameras = [
            Camera(height=height, pitch_deg=pitch, image_size=frame_size, x=round(float(x), 3), z=round(float(z), 3), yaw_deg=round((yaw0 + direction * step * i + 180.0) % 360.0 - 180.0, 2))
            for i, (x, z) in enumerate(path)
        ]
        frames, counts = [], []
        scene = Scene(camera=cameras[0], room_width=width, room_depth=depth, room_near=-depth / 2, objects=objects)
        for cam in cameras:
            scene.camera = cam
            img, ids = render(scene)
            frames.append(img)
            counts.append(np.bincount(ids.ravel(), minlength=len(objects) + 1)[1:])
        visible = np.array(counts)
        if (visible >= thr).any(axis=0).all():
            return Walk(width, depth, objects, cameras, FPS, frames, visible, thr)
    return None


def sample_walk(rng: random.Random, frame_size: int = 112, num_frames: int = 8, pick: Callable[[random.Random, list[SceneObject]], Any] | None = None, max_tries: int = 200) -> tuple[Walk, Any]:
    """A filmed walk that shows every object of its room, and `pick(rng, objects)` for it.

    `pick` chooses a question's objects from the room before anything is rendered (rendering is
    the slow part) and returns None when the room offers no good question; the room is then
    redrawn. Returns (walk, what `pick` returned, or None without `pick`)."""
    for _ in range(max_tries):
        width, depth, objects = sample_room(rng)
        spec = pick(rng, objects) if pick is not None else None
        if pick is not None and spec is None:
            continue
        walk = film(rng, width, depth, objects, frame_size, num_frames)
        if walk is not None:
            return walk, spec
    raise RuntimeError(f"no walk showing every object in {max_tries} rooms; raise max_tries or num_frames")


# ---------------------------------------------------------------------------------------------
# Shared pieces of the samples


def _frame_list(frames: list[int]) -> str:
    return ", ".join(str(f + 1) for f in frames)


def _sample(task: str, vsi_type: str, walk: Walk, question: str, answer: str, answer_type: str, cot: str, fields: dict[str, Any], choices: list[str] | None = None) -> Generated:
    video_entry, video = walk.video()
    meta = walk.to_meta() | {"vsi_type": vsi_type}
    assert not set(fields) & set(meta), f"task fields {sorted(set(fields) & set(meta))} would overwrite the walk's meta"
    meta |= fields
    s = Sample(id="", task=task, question=question, answer=answer, answer_type=answer_type, choices=choices or [], images=[], videos=[video_entry], cot=cot, meta=meta)
    return s, [video]


def _numeric(task: str, vsi_type: str, walk: Walk, question: str, value: str, unit: str, steps: list[str], check: str, fields: dict[str, Any]) -> Generated:
    cot = trace(steps, check, f"The answer is {value}{unit}.", value)
    return _sample(task, vsi_type, walk, question, value, "number", cot, fields)


def _choice(task: str, vsi_type: str, walk: Walk, question: str, choices: list[str], correct: str, steps: list[str], check: str, fields: dict[str, Any]) -> Generated:
    letter = LETTERS[choices.index(correct)]
    cot = trace(steps, check, f"The answer is {correct} (option {letter}).", letter)
    return _sample(task, vsi_type, walk, question, letter, "choice", cot, fields, choices)


def _at(o: SceneObject) -> str:
    return f"the {o.name} at about ({o.x:.1f}, {o.z:.1f})"


GRID_NOTE = "From the walk I place the objects on a floor plan using the 1 m grid, as (x, z) in meters from the middle of the room:"


# ---------------------------------------------------------------------------------------------
# The eight tasks


def video_obj_count(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`object_counting`: how many objects of one shape the walk shows, each counted once."""
    walk, _ = sample_walk(rng, frame_size, num_frames)
    shape = rng.choice(sorted({o.shape for o in walk.objects}))
    match = sorted((o for o in walk.objects if o.shape == shape), key=walk.first_seen)
    others = [o for o in walk.objects if o.shape != shape]
    seen_in = {o.name: np.flatnonzero(walk.seen[:, walk.objects.index(o)]).tolist() for o in walk.objects}
    steps = [f"I go through the {len(walk.frames)} frames and note each {shape} the first time it appears, so the same one seen again later is not counted twice."]
    steps += [f"The {o.name} is in frame(s) {_frame_list(seen_in[o.name])}." for o in match]
    steps.append(f"They differ in colour, so these are {len(match)} different {shape}s." if len(match) > 1 else f"No other {shape} appears in any frame.")
    check = f"the other objects in the video ({', '.join(o.name for o in others) or 'none'}) are not {shape}s, so the count is {len(match)}."
    q = f"How many {shape}(s) are in this room?"
    return _numeric("spatial/video/obj_count", "object_counting", walk, q, str(len(match)), "", steps, check, {"category": shape, "matches": [o.name for o in match]})


def _pick_pair(rng: random.Random, objects: list[SceneObject]):
    return tuple(rng.sample(objects, 2))


def video_abs_distance(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`object_abs_distance`: distance between the closest points of two objects' boxes."""
    walk, (a, b) = sample_walk(rng, frame_size, num_frames, _pick_pair)
    gx, _, gz = box_gaps(a, b)
    d = box_distance(a, b)
    ans = fmt(d, 2)

    def extent(o):
        return f"the {o.name} spans x {o.x - o.width / 2:.2f} to {o.x + o.width / 2:.2f} and z {o.z - o.depth / 2:.2f} to {o.z + o.depth / 2:.2f}"

    steps = [GRID_NOTE, extent(a).capitalize() + ".", extent(b).capitalize() + ".", "Both stand on the floor, so their heights overlap and the closest points are level.", f"The gap between them is {gx:.2f} m along x and {gz:.2f} m along z, so the distance is sqrt({gx:.2f}^2 + {gz:.2f}^2) = {ans} m."]
    check = f"{ans}^2 = {d * d:.2f}, and {gx:.2f}^2 + {gz:.2f}^2 = {gx * gx + gz * gz:.2f}."
    q = f"Measuring from the closest point of each object, what is the distance between the {a.name} and the {b.name} (in meters)?"
    return _numeric("spatial/video/abs_distance", "object_abs_distance", walk, q, ans, " m", steps, check, {"a": a.name, "b": b.name})


def video_obj_size(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`object_size_estimation`: the longest dimension of one object, in centimetres."""
    walk, (o,) = sample_walk(rng, frame_size, num_frames, lambda r, objs: (r.choice(objs),))
    dims = [round(v * 100) for v in (o.width, o.height, o.depth)]
    longest = max(dims)
    f = walk.first_seen(o)
    steps = [f"The {o.name} first shows up in frame {f + 1}; against the 1 m floor grid it is about {dims[0]} cm wide, {dims[1]} cm tall and {dims[2]} cm deep.", f"Its longest dimension is {longest} cm."]
    check = f"max({', '.join(map(str, dims))}) = {longest}."
    q = f"What is the length of the longest dimension (length, width, or height) of the {o.name}, measured in centimeters?"
    return _numeric("spatial/video/obj_size", "object_size_estimation", walk, q, str(longest), " cm", steps, check, {"object": o.name})


def video_room_size(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`room_size_estimation`: the floor area in square metres."""
    walk, _ = sample_walk(rng, frame_size, num_frames)
    w, d = walk.room_width, walk.room_depth
    ans = fmt(w * d, 2)
    steps = [f"Counting the 1 m squares of the floor grid between the walls over the walk, the floor is {w:.1f} m wide and {d:.1f} m deep.", f"Its area is {w:.1f} x {d:.1f} = {ans} square meters."]
    check = f"{ans} / {w:.1f} = {d:.1f}."
    q = "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space."
    return _numeric("spatial/video/room_size", "room_size_estimation", walk, q, ans, " m^2", steps, check, {"area": w * d})


def _pick_rel_distance(rng: random.Random, objects: list[SceneObject]):
    for _ in range(10):
        target = rng.choice(objects)
        cands = rng.sample([o for o in objects if o is not target], min(4, len(objects) - 1))
        dist = sorted(box_distance(target, c) for c in cands)
        if dist[1] - dist[0] >= 0.25 and dist[1] >= 1.25 * dist[0]:  # clearly closest
            return target, cands
    return None


def video_rel_distance(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`object_rel_distance`: which of up to four objects is closest (box to box) to a target."""
    walk, (target, cands) = sample_walk(rng, frame_size, num_frames, _pick_rel_distance)
    dist = {c.name: box_distance(target, c) for c in cands}
    near = min(cands, key=lambda c: dist[c.name])
    second = sorted(dist.values())[1]
    names = [c.name for c in cands]
    steps = [GRID_NOTE, _at(target).capitalize() + f" is {target.width:.2f} m wide and {target.depth:.2f} m deep."]
    steps += [f"The closest point of the {c.name} is {dist[c.name]:.2f} m from it." for c in cands]
    steps.append(f"The smallest of these is {dist[near.name]:.2f} m, the {near.name}.")
    check = f"the runner-up is {second:.2f} m away, {second - dist[near.name]:.2f} m farther than the {near.name}."
    q = f"Measuring from the closest point of each object, which of these objects ({', '.join(names)}) is the closest to the {target.name}?"
    return _choice("spatial/video/rel_distance", "object_rel_distance", walk, q, names, near.name, steps, check, {"target": target.name, "candidates": names, "distances": dist})


REL_DIRECTION = {  # level: (question tail, options), worded as VSI-Bench's templates; {face}: the faced object
    "easy": ("to the left or the right of the {face}?", ["left", "right"]),
    "medium": ("to my left, right, or back? An object is to my back if I would have to turn at least 135 degrees in order to face it.", ["left", "right", "back"]),
    "hard": ("to my front-left, front-right, back-left, or back-right? The directions refer to the quadrants of a Cartesian plane (if I am standing at the origin and facing along the positive y-axis).", ["front-left", "front-right", "back-left", "back-right"]),
}


def direction_answer(level: str, angle: float, margin: float = 15.0) -> str | None:
    """The answer of a rel-direction question of `level` for a target at signed bearing `angle`
    (degrees, positive = right), None within `margin` degrees of a boundary between answers."""
    a, side = abs(angle), "right" if angle > 0 else "left"
    if level == "medium":  # left | right up to 135 degrees, back beyond: no boundary at 180
        if abs(a - 135) < margin:
            return None
        return "back" if a > 135 else None if a < margin else side
    if a < margin or a > 180 - margin:  # straight ahead or behind: neither left nor right
        return None
    if level == "easy":
        return side
    if abs(a - 90) < margin:
        return None
    return ("front-" if a < 90 else "back-") + side


def _pick_rel_direction(level: str):
    def pick(rng: random.Random, objects: list[SceneObject]):
        for _ in range(20):
            a, b, c = rng.sample(objects, 3)
            if math.hypot(b.x - a.x, b.z - a.z) < 1.0 or math.hypot(c.x - a.x, c.z - a.z) < 0.8:
                continue
            if direction_answer(level, bearing(a, b, c)) is not None:
                return a, b, c
        return None

    return pick


def video_rel_direction(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`object_rel_direction_{easy,medium,hard}`: where a third object lies for someone standing by
    one object and facing another."""
    level = rng.choice(list(REL_DIRECTION))
    walk, (a, b, c) = sample_walk(rng, frame_size, num_frames, _pick_rel_direction(level))
    angle = bearing(a, b, c)
    answer = direction_answer(level, angle)
    tail, options = REL_DIRECTION[level]
    fx, fz, vx, vz = b.x - a.x, b.z - a.z, c.x - a.x, c.z - a.z
    cross, dot = fx * vz - fz * vx, fx * vx + fz * vz
    hb, hc = heading(fx, fz), heading(vx, vz)
    steps = [GRID_NOTE, f"I stand by {_at(a)} and face {_at(b)}; the {c.name} is at about ({c.x:.1f}, {c.z:.1f}).", f"Measuring headings from +z turning towards +x, I face heading {hb:.0f} degrees and the {c.name} is at heading {hc:.0f} degrees.", f"So I would turn {abs(angle):.0f} degrees to my {'right' if angle > 0 else 'left'} to face the {c.name}: it is to my {answer}."]
    check = f"the cross product of my facing direction and the direction to the {c.name} is {cross:.2f} ({'negative: right' if cross < 0 else 'positive: left'}), and their dot product is {dot:.2f} ({'in front' if dot > 0 else 'behind'})."
    q = f"If I am standing by the {a.name} and facing the {b.name}, is the {c.name} {tail.format(face=b.name)}"
    vsi = f"object_rel_direction_{level}"
    return _choice("spatial/video/rel_direction", vsi, walk, q, options, answer, steps, check, {"level": level, "stand": a.name, "face": b.name, "target": c.name, "bearing_deg": angle})


TURNS = ("Turn Left", "Turn Right", "Turn Back")  # option texts as in VSI-Bench


def turn_name(angle: float) -> str | None:
    """The route-plan action for a signed turn (degrees, positive = right), None where it is
    ambiguous: nearly straight, between a side turn and turning back."""
    a = abs(angle)
    if 50 <= a <= 125:
        return "Turn Right" if angle > 0 else "Turn Left"
    if a >= 150:
        return "Turn Back"
    return None


def _leg_is_clear(p: SceneObject, q: SceneObject, objects: list[SceneObject]) -> bool:
    """The straight walk from `p`'s centre to `q`'s is at least 1 m and passes no other object's box (by 0.1 m)."""
    if math.hypot(q.x - p.x, q.z - p.z) < 1.0:
        return False
    t = np.linspace(0.0, 1.0, 40)
    x, z = p.x + t * (q.x - p.x), p.z + t * (q.z - p.z)
    return all((_point_box_distance(x, z, o) > 0.1).all() for o in objects if o is not p and o is not q)


def route_turns(start: SceneObject, facing: SceneObject, stops: list[SceneObject], starts_with_turn: bool) -> list[tuple[SceneObject, SceneObject, float, float, float | None]]:
    """The legs of a route: (from, to, heading before, heading of the leg, signed turn or None).

    The robot stands at `start` facing `facing` and walks centre to centre through `stops`. Without
    `starts_with_turn` the first stop is `facing` itself, reached straight ahead (turn None);
    every other leg starts with a turn, a [please fill in] of the question."""
    legs = []
    h = heading(facing.x - start.x, facing.z - start.z)
    for p, q in zip([start] + stops, stops):
        h_next = heading(q.x - p.x, q.z - p.z)
        angle = None if (p is start and not starts_with_turn) else turn(h, h_next)
        legs.append((p, q, h, h_next, angle))
        h = h_next
    return legs


def _pick_route(rng: random.Random, objects: list[SceneObject]):
    """(start, facing, stops, starts_with_turn) of a route with 1-2 unambiguous turns."""
    for _ in range(30):
        fills, starts_with_turn = rng.choice([1, 2]), rng.random() < 0.5
        if starts_with_turn:  # 1. [fill in] 2. Go forward until S1 ...: a facing object apart from the stops
            if fills + 2 > len(objects):
                continue
            start, facing, *stops = rng.sample(objects, fills + 2)
        else:  # 1. Go forward until the facing object 2. [fill in] ...
            start, *stops = rng.sample(objects, fills + 2)
            facing = stops[0]
        route = [start] + stops
        if not all(_leg_is_clear(p, q, objects) for p, q in zip(route, route[1:])):
            continue
        legs = route_turns(start, facing, stops, starts_with_turn)
        if all(turn_name(a) is not None for *_, a in legs if a is not None):
            return start, facing, stops, starts_with_turn
    return None


def video_route_plan(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`route_planning`: fill in the turns (left, right, back) of a route between objects."""
    walk, (start, facing, stops, starts_with_turn) = sample_walk(rng, frame_size, num_frames, _pick_route)
    legs = route_turns(start, facing, stops, starts_with_turn)
    turns = [turn_name(a) for *_, a in legs if a is not None]
    actions = []
    for p, q, _, _, angle in legs:
        if angle is not None:
            actions.append("[please fill in]")
        actions.append(f"Go forward until the {q.name}.")
    plan = " ".join(f"{i + 1}. {a}" for i, a in enumerate(actions))
    goal = stops[-1]
    q = (f"You are a robot beginning at the {start.name} facing the {facing.name}. You want to navigate to the {goal.name}. "
         f"You will perform the following actions (Note: for each [please fill in], choose either 'turn back,' 'turn left,' or 'turn right.'): {plan} You have reached the final destination.")
    correct = ", ".join(turns)
    combos = [", ".join(c) for c in itertools.product(TURNS, repeat=len(turns))]
    choices, _ = _as_choice(rng, correct, rng.sample(combos, len(combos)))
    h0 = legs[0][2]
    steps = [GRID_NOTE, f"I start at {_at(start)}, facing {_at(facing)}: heading {h0:.0f} degrees (measured from +z towards +x)."]
    for p, q_, h, h_next, angle in legs:
        if angle is None:
            steps.append(f"The {q_.name} is straight ahead, so I go forward until it.")
        else:
            steps.append(f"At the {p.name} I face heading {h:.0f} and {_at(q_)} is at heading {h_next:.0f}, {abs(angle):.0f} degrees to my {'right' if angle > 0 else 'left'}: {turn_name(angle).lower()}, then go forward until it.")
    check = f"applying '{correct}' to my heading, each 'go forward' leg then points at its object within 45 degrees, and the last leg ends at the {goal.name}."
    fields = {"start": start.name, "facing": facing.name, "stops": [s.name for s in stops], "turns": turns, "starts_with_turn": starts_with_turn}
    return _choice("spatial/video/route_plan", "route_planning", walk, q, choices, correct, steps, check, fields)


def video_appearance_order(rng: random.Random, frame_size: int, mc: bool, num_frames: int) -> Generated:
    """`obj_appearance_order`: the order in which four objects (three where a walk has no four
    clean first appearances) first appear; their first frames differ, and none of them shows a
    single pixel before its first frame."""
    for _ in range(100):
        walk, _ = sample_walk(rng, frame_size, num_frames)
        clear = []  # objects with a clean first appearance: no pixel at all before it
        for k, o in enumerate(walk.objects):
            f = walk.first_seen(o)
            if f is not None and not walk.visible_px[:f, k].any():
                clear.append(o)
        by_frame: dict[int, list[SceneObject]] = {}
        for o in clear:
            by_frame.setdefault(walk.first_seen(o), []).append(o)
        n = min(4, len(by_frame))  # VSI-Bench asks for four categories; three where the walk offers fewer
        if n >= 3:
            frames = rng.sample(sorted(by_frame), n)
            picked = [rng.choice(by_frame[f]) for f in frames]
            break
    else:
        raise RuntimeError("no walk with distinct first appearances in 100 tries")
    order = sorted(picked, key=walk.first_seen)
    correct = ", ".join(o.name for o in order)
    perms = [", ".join(o.name for o in p) for p in itertools.permutations(order)]
    choices, _ = _as_choice(rng, correct, rng.sample(perms, len(perms)))
    steps = [f"The {o.name} first appears in frame {walk.first_seen(o) + 1}." for o in picked]
    steps.append("Sorting by first appearance: " + ", ".join(f"{o.name} (frame {walk.first_seen(o) + 1})" for o in order) + ".")
    check = "the frame numbers " + " < ".join(str(walk.first_seen(o) + 1) for o in order) + " increase, and none of these objects shows up before its frame."
    q = f"What will be the first-time appearance order of the following categories in the video: {', '.join(o.name for o in picked)}?"
    fields = {"categories": [o.name for o in picked], "first_frames": {o.name: walk.first_seen(o) for o in picked}}
    return _choice("spatial/video/appearance_order", "obj_appearance_order", walk, q, choices, correct, steps, check, fields)


VIDEO_TASKS: dict[str, Callable[[random.Random, int, bool, int], Generated]] = {
    "spatial/video/obj_count": video_obj_count,
    "spatial/video/abs_distance": video_abs_distance,
    "spatial/video/obj_size": video_obj_size,
    "spatial/video/room_size": video_room_size,
    "spatial/video/rel_distance": video_rel_distance,
    "spatial/video/rel_direction": video_rel_direction,
    "spatial/video/route_plan": video_route_plan,
    "spatial/video/appearance_order": video_appearance_order,
}
