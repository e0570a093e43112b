"""A small 3D scene simulator: objects with known 3D position, size and colour on a floor,
seen through a pinhole camera and rendered with PIL.

World frame: x to the right, y up, z forward (metres); the floor is the plane y = 0 and the
camera sits at (0, camera_height, 0), looking along +z, pitched down by `pitch_deg`.
Every object stands on the floor, so its centre is at height `height / 2`.

A camera may also stand elsewhere and turn (`Camera.x`, `Camera.z`, `Camera.yaw_deg`; the
camera walks of `walk.py`). Yaw is the rotation about the vertical axis: 0 looks along +z and a
positive yaw turns the view towards +x, i.e. to the right, so yaw 90 looks along +x; the heading
of a floor direction (dx, dz) is atan2(dx, dz). With all three at 0 the camera is the one above.
A camera inside the room sees part of the floor behind or beside it, so the floor and its grid
are clipped in camera space at the near plane z_cam = NEAR before projection. Objects are not
clipped: an object with any point nearer than NEAR (behind or beside the camera) is left out of
that frame entirely, in the image and the id buffer alike, so visibility read off the id buffer
always agrees with the pixels.

The renderer paints far objects first (painter's algorithm). Each object's front faces carry
its exact base colour and its top face a fixed lighter shade, with no anti-aliasing, so a
render can be checked pixel by pixel. An object-id buffer drawn alongside says how many pixels
of each object stay visible; `sample_scene` rejects scenes where an object is (nearly) hidden,
so "how many ... can you see" questions have a true answer.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw

# Base colours: far apart in RGB, none equal to the floor, wall, grid or any top-face shade.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 130, 10),
    "cyan": (20, 200, 210),
    "pink": (240, 100, 180),
}
SHAPES = ("cube", "sphere", "cylinder")
WALL_RGB = (200, 205, 215)
FLOOR_RGB = (150, 140, 125)
GRID_RGB = (120, 112, 100)
FLOOR_LIGHT = (1.25, 0.7)  # floor and grid brightness at the left and the right wall (window on the left; `_light_floor`)
NEAR = 0.1  # near plane, m in front of the camera; nearer geometry is clipped (floor) or dropped (objects)


def top_shade(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The lighter shade used for an object's top face (35% towards white)."""
    return tuple(int(round(c + 0.35 * (255 - c))) for c in rgb)  # type: ignore[return-value]


@dataclass
class Camera:
    height: float  # m above the floor
    pitch_deg: float  # downward tilt
    image_size: int  # square images, pixels
    hfov_deg: float = 60.0
    x: float = 0.0  # position on the floor, m
    z: float = 0.0
    yaw_deg: float = 0.0  # about the vertical axis: 0 looks along +z, positive turns right (towards +x)

    @property
    def focal(self) -> float:
        return (self.image_size / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The camera's right, up and forward directions in the world frame."""
        t, a = math.radians(self.pitch_deg), math.radians(self.yaw_deg)
        # At yaw 0 these are exactly (1, 0, 0), (0, cos t, sin t), (0, -sin t, cos t): unchanged renders.
        right = np.array([math.cos(a), 0.0, -math.sin(a)])
        up = np.array([math.sin(a) * math.sin(t), math.cos(t), math.cos(a) * math.sin(t)])
        forward = np.array([math.sin(a) * math.cos(t), -math.sin(t), math.cos(a) * math.cos(t)])
        return right, up, forward

    def to_camera(self, p: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> camera frame [N, 3] (x right, y down, z forward)."""
        d = p - np.array([self.x, self.height, self.z])
        right, up, forward = self.axes()
        return np.stack([d[:, 0] * right[0] + d[:, 2] * right[2], -(d @ up), d @ forward], axis=1)

    def to_pixels(self, c: np.ndarray) -> np.ndarray:
        """Camera-frame points [N, 3] (z > 0) -> pixel coordinates [N, 2]."""
        f, half = self.focal, self.image_size / 2
        return np.stack([f * c[:, 0] / c[:, 2] + half, f * c[:, 1] / c[:, 2] + half], axis=1)

    def project(self, p: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> pixel coordinates [N, 2]; points must be in front of the camera."""
        return self.to_pixels(self.to_camera(p))


@dataclass
class SceneObject:
    colour: str
    shape: str
    x: float  # centre on the floor, m
    z: float
    width: float  # extent along x, m
    height: float  # extent along y, m
    depth: float  # extent along z, m

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.x, self.height / 2, self.z])

    @property
    def footprint_radius(self) -> float:
        return 0.5 * math.hypot(self.width, self.depth)


@dataclass
class Scene:
    camera: Camera
    room_width: float  # floor extent along x, m
    room_depth: float  # floor extent along z, m
    room_near: float  # z of the floor's near edge, m
    objects: list[SceneObject] = field(default_factory=list)

    def to_meta(self) -> dict:
        return {
            "camera": asdict(self.camera),
            "room": {"width": self.room_width, "depth": self.room_depth, "near": self.room_near},
            "objects": [asdict(o) for o in self.objects],
        }

    @classmethod
    def from_meta(cls, meta: dict) -> "Scene":
        room = meta["room"]
        return cls(
            camera=Camera(**meta["camera"]),
            room_width=room["width"],
            room_depth=room["depth"],
            room_near=room["near"],
            objects=[SceneObject(**o) for o in meta["objects"]],
        )

    def find(self, name: str) -> SceneObject:
        return next(o for o in self.objects if o.name == name)


def _deep_inside(pts: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """[N] bool: points of [N, 2] more than `margin` inside the polygon of their extreme points in
    eight directions. Such points are inside the convex hull, so never among its vertices."""
    dirs = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=float)  # counter-clockwise
    ext = pts[np.argmax(pts @ dirs.T, axis=0)]  # [8, 2]
    ext = ext[np.any(ext != np.roll(ext, 1, axis=0), axis=1)]  # drop repeated corners
    if len(ext) < 3:
        return np.zeros(len(pts), dtype=bool)
    inside = np.ones(len(pts), dtype=bool)
    for a, b in zip(ext, np.roll(ext, -1, axis=0)):
        edge = b - a
        inside &= (edge[0] * (pts[:, 1] - a[1]) - edge[1] * (pts[:, 0] - a[0])) > margin * math.hypot(*edge)
    return inside


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Convex hull (monotone chain) of 2D points [N, 2], counter-clockwise."""
    pts = np.round(points, 3)
    if len(pts) > 16:  # spheres and cylinders: skip points that cannot be vertices (saves time, same hull)
        pts = pts[~_deep_inside(pts)]
    pts = sorted(set(map(tuple, pts.tolist())))  # Python floats: the same values as float64, faster arithmetic
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _sphere_directions() -> np.ndarray:
    """Unit vectors [432, 3] sampling a sphere on great circles; dense enough for its silhouette at these sizes."""
    dirs = []
    for a in np.linspace(0, 2 * math.pi, 48, endpoint=False):
        for b in np.linspace(-math.pi / 2, math.pi / 2, 9):
            dirs.append([math.cos(b) * math.cos(a), math.sin(b), math.cos(b) * math.sin(a)])
    return np.array(dirs)


_SPHERE_DIRS = _sphere_directions()


def _object_points(obj: SceneObject) -> tuple[np.ndarray, np.ndarray | None]:
    """(points [N, 3] whose convex hull in the image is the object's silhouette, top-face outline or None)."""
    if obj.shape == "sphere":
        return obj.centre + (obj.width / 2) * _SPHERE_DIRS, None
    if obj.shape == "cylinder":
        angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        rx, rz = obj.width / 2, obj.depth / 2
        circle = np.stack([obj.x + rx * np.cos(angles), np.zeros_like(angles), obj.z + rz * np.sin(angles)], axis=1)
        top = circle + np.array([0.0, obj.height, 0.0])
        return np.concatenate([circle, top]), top
    # cube / box
    hx, hz = obj.width / 2, obj.depth / 2
    base = np.array([[obj.x - hx, 0, obj.z - hz], [obj.x + hx, 0, obj.z - hz], [obj.x + hx, 0, obj.z + hz], [obj.x - hx, 0, obj.z + hz]])
    top = base + np.array([0.0, obj.height, 0.0])
    return np.concatenate([base, top]), top


def _object_polygons(obj: SceneObject, cam: Camera) -> tuple[list, list | None] | None:
    """(silhouette polygon, top-face polygon or None) in pixels; None when nothing of the object
    can reach the image: a point nearer than NEAR (the object is then not drawn at all, see the
    module docstring), or a silhouette wholly outside the frame (drawing it would paint nothing)."""
    points, top = _object_points(obj)
    c = cam.to_camera(points)
    if c[:, 2].min() < NEAR:
        return None
    px = cam.to_pixels(c)
    lo, hi = px.min(axis=0), px.max(axis=0)
    if (hi < -2).any() or (lo > cam.image_size + 2).any():  # 2 px slack for PIL's rounding of vertices
        return None
    return _hull(px), None if top is None else [tuple(p) for p in cam.project(top)]


def _clip_near(c: np.ndarray, closed: bool) -> np.ndarray:
    """Clip a camera-frame polygon (`closed`) or segment [N, 3] to z >= NEAR (Sutherland-Hodgman)."""
    if (c[:, 2] >= NEAR).all():
        return c
    out = []
    n = len(c)
    for i in range(n if closed else n - 1):
        p, q = c[i], c[(i + 1) % n]
        if p[2] >= NEAR:
            out.append(p)
        if (p[2] >= NEAR) != (q[2] >= NEAR):
            out.append(p + (q - p) * (NEAR - p[2]) / (q[2] - p[2]))
    if not closed and c[-1, 2] >= NEAR:
        out.append(c[-1])
    return np.array(out).reshape(-1, 3)


def _light_floor(img: Image.Image, scene: Scene) -> None:
    """Shade the floor and its grid (in place, before objects are drawn) by the light of a window in the left wall.

    The brightness of a floor point falls linearly with its world x, from `FLOOR_LIGHT[0]` at the left wall to
    `FLOOR_LIGHT[1]` at the right one, so every camera of a walk sees the same floor. Besides realism it gives a
    patch's content a cue of where it is: Qwen2.5-VL encodes positions only with rotary (relative) embeddings, and
    `benchmarks/perception_probe.py` measures that a small model learns "which half" only with such a cue."""
    cam = scene.camera
    px = np.asarray(img).astype(np.float32)
    on_floor = (px == FLOOR_RGB).all(-1) | (px == GRID_RGB).all(-1)
    if not on_floor.any():
        return
    v, u = np.nonzero(on_floor)
    f, half = cam.focal, cam.image_size / 2
    right, up, forward = cam.axes()
    rays = ((u + 0.5 - half) / f)[:, None] * right - ((v + 0.5 - half) / f)[:, None] * up + forward  # world directions (image y is down)
    dy = np.minimum(rays[:, 1], -1e-6)  # floor pixels look down
    x = cam.x + (-cam.height / dy) * rays[:, 0]
    share = np.clip((x + scene.room_width / 2) / scene.room_width, 0.0, 1.0)
    gain = FLOOR_LIGHT[0] + (FLOOR_LIGHT[1] - FLOOR_LIGHT[0]) * share
    px[v, u] = np.clip(px[v, u] * gain[:, None], 0, 255)
    img.paste(Image.fromarray(np.rint(px).astype(np.uint8)))


def render(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """Render the scene. Returns (RGB image, id buffer [H, W] with object index + 1, 0 = none).

    Objects with a point nearer than NEAR are in neither (see the module docstring)."""
    cam = scene.camera
    size = cam.image_size
    img = Image.new("RGB", (size, size), WALL_RGB)
    ids = Image.new("L", (size, size), 0)
    draw, idraw = ImageDraw.Draw(img), ImageDraw.Draw(ids)

    x0, x1 = -scene.room_width / 2, scene.room_width / 2
    z0, z1 = scene.room_near, scene.room_near + scene.room_depth
    floor = _clip_near(cam.to_camera(np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]])), closed=True)
    if len(floor) >= 3:
        draw.polygon([tuple(p) for p in cam.to_pixels(floor)], fill=FLOOR_RGB)
    # A 1 m grid on the floor: the metric cue a model can use for absolute distances.
    lines = [((gx, z0), (gx, z1)) for gx in np.arange(math.ceil(x0), x1 + 1e-9, 1.0)]
    lines += [((x0, gz), (x1, gz)) for gz in np.arange(math.ceil(z0), z1 + 1e-9, 1.0)]
    for (ax, az), (bx, bz) in lines:
        seg = _clip_near(cam.to_camera(np.array([[ax, 0, az], [bx, 0, bz]])), closed=False)
        if len(seg) == 2:
            p = cam.to_pixels(seg)
            draw.line([tuple(p[0]), tuple(p[1])], fill=GRID_RGB, width=1)

    _light_floor(img, scene)

    depth = [float(cam.to_camera(o.centre[None])[0, 2]) for o in scene.objects]
    for i in sorted(range(len(scene.objects)), key=lambda k: -depth[k]):  # far to near
        obj = scene.objects[i]
        polygons = _object_polygons(obj, cam)
        if polygons is None:
            continue
        sil, top = polygons
        rgb = PALETTE[obj.colour]
        draw.polygon(sil, fill=rgb)
        idraw.polygon(sil, fill=i + 1)
        if top is not None:
            draw.polygon(top, fill=top_shade(rgb))
            idraw.polygon(top, fill=i + 1)
    return img, np.asarray(ids)


def sample_scene(
    rng: random.Random,
    image_size: int = 168,
    n_objects: tuple[int, int] = (2, 6),
    min_visible_px: int = 40,
    max_tries: int = 200,
    spread: bool = True,
) -> tuple[Scene, Image.Image]:
    """Draw a random scene whose objects are all clearly visible; returns (scene, render).

    `spread` (EMBEDDED_VERSION 6): a steeper camera, the floor starting nearer it, and each object's distance drawn so
    that the angle at which the camera sees its centre is uniform over the view, so objects stand in every third of
    the image's height (33/50/18% top to bottom, where v5's scenes, `spread=False`, gave 27/72/1%): a reading's row
    then says something, and `benchmarks/perception_probe.py --rows` (against `--unspread`) measures that the tiny model learns to read it."""
    for _ in range(max_tries):
        if spread:  # looking down more steeply, so that the floor fills the view
            cam = Camera(height=rng.uniform(1.7, 2.3), pitch_deg=rng.uniform(36, 44), image_size=image_size)
        else:
            cam = Camera(height=rng.uniform(1.3, 1.8), pitch_deg=rng.uniform(22, 32), image_size=image_size)
        width, depth = round(rng.uniform(3.0, 6.0), 1), round(rng.uniform(3.0, 6.0), 1)
        scene = Scene(camera=cam, room_width=width, room_depth=depth, room_near=0.5 if spread else 1.2)
        n = rng.randint(*n_objects)
        kinds = rng.sample([(c, s) for c in PALETTE for s in SHAPES], n)
        ok = True
        for colour, shape in kinds:
            for _try in range(50):
                if shape == "sphere":
                    w = h = d = round(rng.uniform(0.25, 0.7), 2)
                elif shape == "cylinder":
                    w = d = round(rng.uniform(0.25, 0.6), 2)
                    h = round(rng.uniform(0.3, 1.0), 2)
                else:
                    w, h, d = (round(rng.uniform(0.25, 0.8), 2) for _ in range(3))
                # Keep objects inside the floor and inside the field of view.
                if spread:
                    near, far = scene.room_near + 0.4, scene.room_near + depth - 0.4
                    hc = h / 2  # the centre's height
                    lo, hi = math.degrees(math.atan2(cam.height - hc, far)), math.degrees(math.atan2(cam.height - hc, near))
                    angle = rng.uniform(max(lo, cam.pitch_deg - 26), min(hi, cam.pitch_deg + 26))
                    z = round((cam.height - hc) / math.tan(math.radians(angle)), 2)
                else:
                    z = round(rng.uniform(scene.room_near + 0.8, scene.room_near + depth - 0.4), 2)
                half_view = z * math.tan(math.radians(cam.hfov_deg) / 2) * 0.75
                xr = min(width / 2 - 0.4, half_view)
                x = round(rng.uniform(-xr, xr), 2)
                obj = SceneObject(colour, shape, x, z, w, h, d)
                if all(math.hypot(obj.x - o.x, obj.z - o.z) > obj.footprint_radius + o.footprint_radius + 0.15 for o in scene.objects):
                    scene.objects.append(obj)
                    break
            else:
                ok = False
                break
        if not ok:
            continue
        img, ids = render(scene)
        visible = np.bincount(ids.ravel(), minlength=len(scene.objects) + 1)[1:]
        if (visible >= min_visible_px).all():
            return scene, img
    raise RuntimeError(f"could not place a fully visible scene in {max_tries} tries; lower n_objects or raise image_size")
