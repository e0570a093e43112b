"""A small 3D scene simulator: objects with known 3D position, size and colour on a floor,
seen through a pinhole camera and rendered with PIL.

World frame: x to the right, y up, z forward (metres); the floor is the plane y = 0 and the
camera sits at (0, camera_height, 0), looking along +z, pitched down by `pitch_deg`.
Every object stands on the floor, so its centre is at height `height / 2`.

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


def top_shade(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The lighter shade used for an object's top face (35% towards white)."""
    return tuple(int(round(c + 0.35 * (255 - c))) for c in rgb)  # type: ignore[return-value]


@dataclass
class Camera:
    height: float  # m above the floor
    pitch_deg: float  # downward tilt
    image_size: int  # square images, pixels
    hfov_deg: float = 60.0

    @property
    def focal(self) -> float:
        return (self.image_size / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def to_camera(self, p: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> camera frame [N, 3] (x right, y down, z forward)."""
        t = math.radians(self.pitch_deg)
        d = p - np.array([0.0, self.height, 0.0])
        forward = np.array([0.0, -math.sin(t), math.cos(t)])
        up = np.array([0.0, math.cos(t), math.sin(t)])
        return np.stack([d[:, 0], -(d @ up), d @ forward], axis=1)

    def project(self, p: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> pixel coordinates [N, 2]; points must be in front of the camera."""
        c = self.to_camera(p)
        f, half = self.focal, self.image_size / 2
        return np.stack([f * c[:, 0] / c[:, 2] + half, f * c[:, 1] / c[:, 2] + half], axis=1)


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


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Convex hull (monotone chain) of 2D points [N, 2], counter-clockwise."""
    pts = sorted(set(map(tuple, np.round(points, 3))))
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


def _object_polygons(obj: SceneObject, cam: Camera) -> tuple[list, list | None]:
    """(silhouette polygon, top-face polygon or None) in pixels."""
    if obj.shape == "sphere":
        r = obj.width / 2
        c = obj.centre
        # Sample the sphere's silhouette from points on great circles; dense enough at these sizes.
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        ring = []
        for a in angles:
            for b in np.linspace(-math.pi / 2, math.pi / 2, 9):
                ring.append(c + r * np.array([math.cos(b) * math.cos(a), math.sin(b), math.cos(b) * math.sin(a)]))
        return _hull(cam.project(np.array(ring))), None
    if obj.shape == "cylinder":
        angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        rx, rz = obj.width / 2, obj.depth / 2
        circle = np.stack([obj.x + rx * np.cos(angles), np.zeros_like(angles), obj.z + rz * np.sin(angles)], axis=1)
        top = circle + np.array([0.0, obj.height, 0.0])
        sil = _hull(cam.project(np.concatenate([circle, top])))
        return sil, [tuple(p) for p in cam.project(top)]
    # cube / box
    hx, hz = obj.width / 2, obj.depth / 2
    base = np.array([[obj.x - hx, 0, obj.z - hz], [obj.x + hx, 0, obj.z - hz], [obj.x + hx, 0, obj.z + hz], [obj.x - hx, 0, obj.z + hz]])
    top = base + np.array([0.0, obj.height, 0.0])
    sil = _hull(cam.project(np.concatenate([base, top])))
    return sil, [tuple(p) for p in cam.project(top)]


def render(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """Render the scene. Returns (RGB image, id buffer [H, W] with object index + 1, 0 = none)."""
    cam = scene.camera
    size = cam.image_size
    img = Image.new("RGB", (size, size), WALL_RGB)
    ids = Image.new("L", (size, size), 0)
    draw, idraw = ImageDraw.Draw(img), ImageDraw.Draw(ids)

    x0, x1 = -scene.room_width / 2, scene.room_width / 2
    z0, z1 = scene.room_near, scene.room_near + scene.room_depth
    floor = cam.project(np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]]))
    draw.polygon([tuple(p) for p in floor], fill=FLOOR_RGB)
    # A 1 m grid on the floor: the metric cue a model can use for absolute distances.
    for gx in np.arange(math.ceil(x0), x1 + 1e-9, 1.0):
        p = cam.project(np.array([[gx, 0, z0], [gx, 0, z1]]))
        draw.line([tuple(p[0]), tuple(p[1])], fill=GRID_RGB, width=1)
    for gz in np.arange(math.ceil(z0), z1 + 1e-9, 1.0):
        p = cam.project(np.array([[x0, 0, gz], [x1, 0, gz]]))
        draw.line([tuple(p[0]), tuple(p[1])], fill=GRID_RGB, width=1)

    depth = [float(cam.to_camera(o.centre[None])[0, 2]) for o in scene.objects]
    for i in sorted(range(len(scene.objects)), key=lambda k: -depth[k]):  # far to near
        obj = scene.objects[i]
        sil, top = _object_polygons(obj, cam)
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
) -> tuple[Scene, Image.Image]:
    """Draw a random scene whose objects are all clearly visible; returns (scene, render)."""
    for _ in range(max_tries):
        cam = Camera(height=rng.uniform(1.3, 1.8), pitch_deg=rng.uniform(22, 32), image_size=image_size)
        width, depth = round(rng.uniform(3.0, 6.0), 1), round(rng.uniform(3.0, 6.0), 1)
        scene = Scene(camera=cam, room_width=width, room_depth=depth, room_near=1.2)
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
