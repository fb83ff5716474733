"""The built-in test scene: a photo-like landscape glnet draws itself, the input when none is given.

Drawn by the package (no download, no bundled asset) so that ``glnet`` shows meaningful activations
out of the box: convnets respond to edges, textures and colours, so the scene is a landscape with all
three rather than a gradient or random noise. World coordinates: the centred square [-0.5, 0.5]² of
the image's shorter side is always visible, x grows right and y grows down; wider or taller images
show more of the same world.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from glnet.errors import InputError
from glnet.inputs import check_side
from glnet.procedural import convex, fbm1, fbm2, lattice, paint, rgb, ridged1, ridged2, smooth, stream_key

__all__ = ["test_image", "test_signal"]


class _Scene:
    """One render of the landscape at a given size; ``render()`` paints the layers back to front."""

    HORIZON = 0.05

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.w, self.h, self.seed = width, height, seed
        self.s = float(min(width, height))  # pixels per world unit
        self.px = 1.0 / self.s
        self.xs = ((np.arange(width) + 0.5 - width / 2) / self.s).astype(np.float32)
        self.ys = ((np.arange(height) + 0.5 - height / 2) / self.s).astype(np.float32)
        self.img = np.zeros((height, width, 3), np.float32)
        rng = np.random.default_rng(stream_key(seed, 999))
        self.sun = (-0.27 + rng.uniform(-0.05, 0.05), -0.30 + rng.uniform(-0.04, 0.04))
        self.massif = rng.uniform(-0.15, 0.15)

    def key(self, field: int) -> int:
        return stream_key(self.seed, field)

    def window(
        self, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Pixel slices and world coords (x as a row, y as a column) covering a world-space box, or None."""
        c0 = max(math.floor(x0 * self.s + self.w / 2) - 1, 0)
        c1 = min(math.ceil(x1 * self.s + self.w / 2) + 1, self.w)
        r0 = max(math.floor(y0 * self.s + self.h / 2) - 1, 0)
        r1 = min(math.ceil(y1 * self.s + self.h / 2) + 1, self.h)
        if c0 >= c1 or r0 >= r1:
            return None
        rs, cs = slice(r0, r1), slice(c0, c1)
        return rs, cs, self.xs[None, cs], self.ys[rs, None]

    def rows(self, y0: float, y1: float) -> tuple[slice, np.ndarray] | None:
        """Full-width band of rows covering world y0..y1: (row slice, y as a column), or None."""
        win = self.window(float(self.xs[0]), float(self.xs[-1]), y0, y1)
        return None if win is None else (win[0], win[3])

    def cov(self, d: np.ndarray) -> np.ndarray:
        """Antialiased coverage of a shape from its signed distance in world units (negative inside)."""
        return np.clip(np.float32(0.5) - d * np.float32(self.s), 0.0, 1.0)

    def render(self) -> np.ndarray:
        self.sky()
        self.clouds()
        self.mountains()
        self.meadow()
        self.flowers()
        self.lake()
        self.path()
        self.barn()
        self.fence()
        self.tree()
        return self.finish()

    # ---- layers ------------------------------------------------------------------------------------

    def sky(self) -> None:
        yh = self.HORIZON
        y = self.ys[:, None]
        x = self.xs[None, :]
        t = np.clip((y + 0.55) / (yh + 0.55), 0.0, 1.0)
        zenith, horizon = rgb(0.16, 0.36, 0.74), rgb(0.74, 0.84, 0.93)
        tt = (t**1.7)[..., None]
        sky = zenith + (horizon - zenith) * tt
        sx, sy = self.sun
        dist = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
        glow = np.exp(-dist / np.float32(0.22)) * np.float32(0.45)
        sky = sky + rgb(1.0, 0.78, 0.5) * glow[..., None] * np.float32(0.6)
        self.img[:] = sky
        self.sun_dist = dist

    def clouds(self) -> None:
        yh = self.HORIZON
        ys = self.ys[self.ys < yh + 0.02]
        if ys.size == 0:
            return
        rs = slice(0, ys.size)
        xs = self.xs
        dens = fbm2(xs, ys, self.key(1), 2.2, 8, self.px, stretch=(1.0, 2.6), gain=0.55)
        sx, sy = self.sun
        # Density a little towards the sun: where it is thinner than here, this side faces the light.
        to_x = xs + np.float32(0.014) * np.tanh((sx - xs) / np.float32(0.15))
        to_y = ys + np.float32(0.010) * np.tanh((sy - ys) / np.float32(0.15))
        toward = fbm2(to_x, to_y, self.key(1), 2.2, 8, self.px, stretch=(1.0, 2.6), gain=0.55)
        y = ys[:, None]
        # Fewer clouds near the horizon and fewer overhead: a band in the upper-middle sky.
        band = smooth(-0.6, -0.35, y) * (1 - smooth(-0.05, yh, y) * 0.7)
        cover = smooth(0.50, 0.66, dens * (0.78 + 0.3 * band))
        lit = np.clip((dens - toward) * 9.0 + 0.55, 0.0, 1.0)
        dark, bright = rgb(0.58, 0.63, 0.73), rgb(1.0, 0.98, 0.95)
        color = dark + (bright - dark) * lit[..., None]
        # Soft cloud bodies: denser cores are more opaque and a little greyer underneath.
        core = smooth(0.58, 0.80, dens)
        color = color * (1 - 0.12 * core[..., None])
        paint(self.img[rs], color, cover * 0.93)
        # Sun disc after the clouds' base but dimmed where clouds cover it; glow on top.
        d = self.sun_dist[rs]
        disc = self.cov(d - 0.032) * (1 - cover * 0.85)
        paint(self.img[rs], rgb(1.0, 0.98, 0.9), disc)
        halo = np.exp(-d / np.float32(0.045)) * np.float32(0.55) * (1 - cover * 0.6)
        self.img[rs] += rgb(1.0, 0.93, 0.8) * halo[..., None]

    def mountains(self) -> None:
        """Three ridges, far to near: snowy peaks, a darker rocky range, then low wooded hills.

        Farther layers are paler and bluer (atmospheric perspective) and mist gathers at their feet.
        """
        yh = self.HORIZON
        xs = self.xs
        haze = rgb(0.70, 0.80, 0.90)
        layers = [
            # base height, ridge amplitude, frequency, colour, haze, snow altitude
            (0.05, 0.21, 1.7, rgb(0.40, 0.46, 0.60), 0.42, 0.175),
            (0.035, 0.12, 3.1, rgb(0.30, 0.34, 0.40), 0.22, 0.15),
        ]
        for i, (base, amp, freq, color, fog, snow) in enumerate(layers):
            # A broad massif under the ridges so that every seed gets real mountains somewhere central.
            centre = self.massif + 0.25 * i
            massif = np.exp(-(((xs - centre) / np.float32(0.3 + 0.1 * i)) ** 2))
            ridges = ridged1(xs, self.key(10 + i), freq, 9, self.px)
            # Scale by the highest peak in the central square, sampled at a fixed resolution so that
            # the scale does not depend on the image size: each seed's ridge then reaches full height.
            probe_xs = np.linspace(-0.5, 0.5, 257, dtype=np.float32)
            probe = ridged1(probe_xs, self.key(10 + i), freq, 9, 1 / 256)
            ridges = ridges / np.float32(max(float(probe.max()), 0.2))
            hgt = base + amp * (0.65 * ridges + 0.3 * massif * (0.5 + ridges))
            top = yh - hgt
            rows = self.rows(float(top.min()), yh)
            if rows is None:
                continue
            rs, y = rows
            ys = self.ys[rs]
            alpha = self.cov(top[None, :] - y) * self.cov(y - yh)
            depth = np.clip((y - top[None, :]) / np.float32(amp), 0.0, 1.0)  # 0 at the ridge line
            # Rock faces: the x-slope of a ridged field makes crests with a sunlit and a shaded side;
            # near the skyline the silhouette's own slope takes over.
            k, f, e = self.key(30 + i), 5.0 + 3.0 * i, 0.004
            rock = ridged2(xs, ys, k, f, 7, self.px, stretch=(1.0, 1.4))
            rock_e = ridged2(xs + e, ys, k, f, 7, self.px, stretch=(1.0, 1.4))
            face = np.tanh((rock_e - rock) / e * 0.06)
            sil = np.tanh(np.gradient(hgt, xs) * 1.2)[None, :] if xs.size > 1 else 0.0
            near_top = np.exp(-depth * 6.0)
            lit = np.clip(0.5 + 0.5 * (sil * near_top + face * (1 - near_top * 0.7)), 0.0, 1.0)
            col = color * (0.55 + 0.75 * lit)[..., None] * (0.85 + 0.3 * rock)[..., None]
            streaks = fbm2(xs, ys, k ^ 0x55, 7.0, 6, self.px, stretch=(2.0, 0.7))
            alt = yh - y + (rock - 0.5) * 0.08 + (streaks - 0.5) * 0.3
            snowy = smooth(snow - 0.004, snow + 0.004, alt) * smooth(-0.3, 0.2, face + 0.4 * sil)
            snow_col = rgb(0.70, 0.78, 0.92) + rgb(0.30, 0.22, 0.08) * lit[..., None]
            col = col + (snow_col - col) * snowy[..., None]
            mist = fog + (1 - fog) * 0.6 * smooth(0.35, 1.0, depth)
            col = col + (haze - col) * mist[..., None]
            paint(self.img[rs], col, alpha)
        self.hills()

    def hills(self) -> None:
        """Wooded hills on the horizon: a rounded crown for every tree, shaded from the sun's side."""
        yh = self.HORIZON
        xs = self.xs
        crown_w = 0.011
        arc = np.zeros_like(xs)
        frac = np.zeros_like(xs)
        for row, (width, shift) in enumerate(((crown_w, 0.0), (crown_w * 0.73, 0.31))):
            u = xs / width + shift
            cell = np.floor(u)
            f = u - cell
            size = 0.35 + 0.65 * lattice(cell.astype(np.int64), np.zeros(1, np.int64), self.key(22 + row))
            a = np.sqrt(np.clip(1.0 - (2.0 * f - 1.0) ** 2, 0.0, 1.0)) * size
            frac = np.where(a > arc, f, frac)
            arc = np.maximum(arc, a)
        visible = smooth(1.5, 4.0, crown_w / self.px)  # crowns narrower than a few pixels blur away
        hgt = 0.016 + 0.045 * fbm1(xs, self.key(20), 3.0, 3, self.px) + 0.009 * arc * visible
        top = yh - hgt
        rows = self.rows(float(top.min()), yh)
        if rows is None:
            return
        rs, y = rows
        ys = self.ys[rs]
        alpha = self.cov(top[None, :] - y) * self.cov(y - yh)
        depth = np.clip((y - top[None, :]) / np.float32(0.02), 0.0, 1.0)
        # 1 at a crown's outline, fading below it.
        crown = np.exp(np.minimum(top[None, :] - y, 0.0) / np.float32(0.005))
        side = (1.0 - 2.0 * frac)[None, :] * crown * visible  # +1 on a crown's sunny left flank
        clumps = fbm2(xs, ys, self.key(35), 45.0, 5, self.px, stretch=(1.0, 1.6))
        lit = np.clip(0.45 + 0.35 * side + 0.7 * (clumps - 0.5) - 0.25 * depth, 0.0, 1.0)
        dark, bright = rgb(0.05, 0.14, 0.07), rgb(0.30, 0.46, 0.20)
        col = dark + (bright - dark) * lit[..., None]
        col = col + (rgb(0.66, 0.76, 0.86) - col) * np.float32(0.18)
        paint(self.img[rs], col, alpha)

    def meadow(self) -> None:
        """Grass from the horizon to the viewer: dry and lush patches, mottling, and blades up close."""
        yh = self.HORIZON
        rows = self.rows(yh, float(self.ys[-1]))
        if rows is None:
            return
        rs, y = rows
        xs, ys = self.xs, self.ys[rs]
        t = np.clip((y - yh) / np.float32(0.45), 0.0, 1.0)  # 0 at the horizon, 1 at the viewer
        far, near = rgb(0.56, 0.64, 0.30), rgb(0.22, 0.45, 0.11)
        base = far + (near - far) * (t**0.6)[..., None]
        patches = fbm2(xs, ys, self.key(40), 3.0, 5, self.px, stretch=(1.0, 3.0))
        dry = smooth(0.52, 0.68, patches)
        base = base + (rgb(0.68, 0.63, 0.30) - base) * (dry * 0.6)[..., None]
        mottle = fbm2(xs, ys, self.key(41), 18.0, 5, self.px, stretch=(1.0, 2.5))
        blades = ridged2(xs, ys, self.key(42), 220.0, 2, self.px, stretch=(1.0, 0.1))
        tufts = fbm2(xs, ys, self.key(43), 45.0, 3, self.px, stretch=(1.0, 0.35))
        near_w = smooth(0.05, 0.8, t)
        shade = 0.75 + 0.55 * (mottle - 0.5) + near_w * (0.9 * (blades - 0.5) + 0.7 * (tufts - 0.5))
        col = base * shade[..., None]
        mist = np.exp(-(y - yh) / np.float32(0.02)) * np.float32(0.4)
        col = col + (rgb(0.72, 0.80, 0.86) - col) * mist[..., None]
        paint(self.img[rs], col, self.cov(yh - y))

    def flowers(self) -> None:
        """Dots of colour on the ground, laid out in perspective so they shrink towards the horizon."""
        yh = self.HORIZON
        win = self.window(float(self.xs[0]), float(self.xs[-1]), yh + 0.04, float(self.ys[-1]))
        if win is None:
            return
        rs, cs, x, y = win
        on_ground = y > yh + 0.03  # the window's margin can reach above the horizon on tiny images
        depth = np.float32(0.05) / np.maximum(y - np.float32(yh), 0.03)  # 1 at y = yh + 0.05
        cell = np.float32(0.006)
        gx = x * depth / cell
        gz = np.broadcast_to(depth / cell, gx.shape)
        ix, iz = np.floor(gx), np.floor(gz)
        key = self.key(50)
        h1 = lattice(ix.astype(np.int64), iz.astype(np.int64), key)
        h2 = lattice(ix.astype(np.int64), iz.astype(np.int64), key ^ 0x5BD1E995)
        h3 = lattice(ix.astype(np.int64), iz.astype(np.int64), key ^ 0x27D4EB2F)
        cluster = fbm2(self.xs[cs], self.ys[rs], self.key(51), 6.0, 3, self.px, stretch=(1.0, 3.0))
        share = 0.05 + 0.5 * smooth(0.45, 0.7, cluster)
        present = (h1 < share) & on_ground
        fx, fz = 0.3 + 0.4 * h2, 0.3 + 0.4 * h3
        dx = (gx - ix - fx) * cell / depth  # ground offsets back to screen units
        dz = (gz - iz - fz) * cell * np.float32(0.05) / depth**2
        radius = np.float32(0.0008) / depth
        dist = np.sqrt(dx * dx + (dz * 1.8) ** 2)
        alpha = self.cov(dist - radius) * present * smooth(0.6, 1.5, radius / np.float32(self.px))
        palette = np.stack(
            [rgb(1.0, 0.86, 0.12), rgb(0.98, 0.97, 0.94), rgb(0.62, 0.32, 0.85), rgb(0.90, 0.18, 0.12)]
        )
        which = np.minimum((h1 / share * 4).astype(np.int64), 3)
        col = palette[which] * (0.85 + 0.3 * h3)[..., None]
        paint(self.img[rs, cs], col, alpha * 0.95)

    def lake(self) -> None:
        """A lake whose far shore is the horizon, mirroring the hills, mountains and sky above it."""
        yh = self.HORIZON
        cx, rx, ry = -0.17, 0.34, 0.12
        win = self.window(cx - rx * 1.1, cx + rx * 1.1, yh, yh + ry * 1.1)
        if win is None:
            return
        rs, cs, x, y = win
        xs, ys = self.xs[cs], self.ys[rs]
        wobble = (fbm1(xs, self.key(60), 8.0, 5, self.px) - 0.5)[None, :] * 0.25
        e = np.sqrt(((x - cx) / rx) ** 2 + ((y - yh) / ry) ** 2) + wobble * (y - yh) / ry
        d = (e - 1.0) * ry  # roughly world units near the shore
        inside = self.cov(d) * self.cov(yh - y)
        # Mirror rows about the horizon, with ripples shifting the reflection sideways.
        ripple = fbm2(xs, ys, self.key(61), 30.0, 5, self.px, stretch=(0.25, 3.0))
        mirror_y = 2 * yh - y
        shift = (ripple - 0.5) * 0.03 * (y - yh + 0.01) / 0.1
        rows = np.clip(np.rint(mirror_y * self.s + self.h / 2 - 0.5), 0, self.h - 1).astype(np.int64)
        cols = np.clip(np.rint((x + shift) * self.s + self.w / 2 - 0.5), 0, self.w - 1).astype(np.int64)
        reflection = self.img[rows, cols]
        t = np.clip((y - yh) / ry, 0.0, 1.0)  # 0 at the far shore, 1 at the near one
        deep = rgb(0.08, 0.20, 0.30)
        water = reflection * 0.82 + (deep - reflection * 0.82) * (0.15 + 0.45 * t)[..., None]
        streak = smooth(0.62, 0.75, ripple)
        water = water + (rgb(0.85, 0.9, 0.95) - water) * (streak * 0.35)[..., None]
        shore = self.cov(d + 0.004)  # 1 well inside, 0 on the shore band
        sand = rgb(0.50, 0.46, 0.34)
        col = sand + (water - sand) * shore[..., None]
        paint(self.img[rs, cs], col, inside)

    def path(self) -> None:
        y0, y1 = 0.275, float(self.ys[-1])
        win = self.window(-0.3, 0.35, y0, y1)
        if win is None:
            return
        rs, cs, x, y = win
        u = np.clip((y - y0) / np.float32(0.23), 0.0, None)
        centre = 0.215 - 0.25 * u + 0.09 * np.sin(u * np.float32(math.pi))
        edge_noise = fbm2(self.xs[cs], self.ys[rs], self.key(70), 40.0, 4, self.px)
        half = 0.010 + 0.055 * u + (edge_noise - 0.5) * 0.02 * (0.3 + u)
        d = np.abs(x - centre) - half
        alpha = self.cov(d) * self.cov(y0 - y)
        grit = fbm2(self.xs[cs], self.ys[rs], self.key(71), 120.0, 3, self.px)
        rut = np.clip(1 - np.abs(np.abs(x - centre) / np.maximum(half, 1e-4) - 0.5) * 4, 0, 1)
        col = rgb(0.60, 0.50, 0.36) * (0.75 + 0.5 * grit - 0.12 * rut)[..., None]
        paint(self.img[rs, cs], col, alpha)

    def barn(self) -> None:
        """A red barn in two-point-ish view: lit gable front, shaded side wall, shingled roof."""
        win = self.window(0.10, 0.56, 0.05, 0.33)
        if win is None:
            return
        rs, cs, x, y = win
        img = self.img[rs, cs]
        ground = 0.275
        # Shadow cast to the right on the grass.
        shadow = convex(
            x, y, [(0.30, ground), (0.45, ground - 0.012), (0.54, ground + 0.018), (0.36, ground + 0.03)]
        )
        img *= (1 - 0.3 * smooth(0.004, -0.006, shadow))[..., None]
        planks = np.abs(((x * 160.0) % 1.0) - 0.5)
        plank_dark = 1 - 0.25 * smooth(0.38, 0.5, planks)
        wood = fbm2(self.xs[cs], self.ys[rs], self.key(80), 25.0, 4, self.px, stretch=(0.3, 3.0))
        red = rgb(0.70, 0.12, 0.09)
        # Side wall (receding to the right).
        side = convex(x, y, [(0.30, 0.155), (0.45, 0.170), (0.45, ground - 0.012), (0.30, ground)])
        side_col = red * (0.55 * plank_dark * (0.8 + 0.4 * wood))[..., None]
        paint(img, side_col, self.cov(side))
        for wx in (0.335, 0.395):  # windows on the side wall
            frame = convex(x, y, [(wx, 0.19), (wx + 0.03, 0.192), (wx + 0.03, 0.225), (wx, 0.226)])
            glass = convex(
                x, y, [(wx + 0.005, 0.196), (wx + 0.025, 0.197), (wx + 0.025, 0.22), (wx + 0.005, 0.221)]
            )
            paint(img, rgb(0.78, 0.76, 0.72), self.cov(frame))
            paint(img, rgb(0.10, 0.12, 0.16), self.cov(glass))
        # Roof over the side wall, shingles running parallel to the eave.
        roof = convex(x, y, [(0.215, 0.075), (0.385, 0.092), (0.465, 0.172), (0.295, 0.152)])
        along = (y - 0.075 - (x - 0.215) * 0.1) * 180.0
        shingle = 1 - 0.3 * smooth(0.35, 0.5, np.abs((along % 1.0) - 0.5))
        roof_col = rgb(0.30, 0.27, 0.27) * (shingle * (0.8 + 0.4 * wood))[..., None]
        paint(img, roof_col, self.cov(roof))
        # Gable front, facing the light.
        front = np.minimum(
            convex(x, y, [(0.135, 0.155), (0.295, 0.155), (0.295, ground), (0.135, ground)]),
            convex(x, y, [(0.215, 0.085), (0.295, 0.155), (0.135, 0.155)]),
        )
        front_col = red * (plank_dark * (0.85 + 0.4 * wood))[..., None]
        paint(img, front_col, self.cov(front))
        # Eaves: a thin white trim along both front roof edges.
        trim = np.minimum(
            convex(x, y, [(0.215, 0.074), (0.305, 0.154), (0.300, 0.162), (0.215, 0.084)]),
            convex(x, y, [(0.215, 0.074), (0.125, 0.154), (0.130, 0.162), (0.215, 0.084)]),
        )
        paint(img, rgb(0.93, 0.92, 0.88), self.cov(trim))
        # Barn door: white frame with a white X, and a hayloft window above it.
        white = rgb(0.94, 0.93, 0.89)
        door_out = convex(x, y, [(0.175, 0.19), (0.255, 0.19), (0.255, ground), (0.175, ground)])
        door_in = convex(x, y, [(0.181, 0.196), (0.249, 0.196), (0.249, ground), (0.181, ground)])
        paint(img, white, self.cov(door_out))
        paint(img, red * 0.8 * plank_dark[..., None], self.cov(door_in))
        cross = np.minimum(
            np.abs((x - 0.181) * (ground - 0.196) - (y - 0.196) * (0.249 - 0.181)) / 0.087 - 0.003,
            np.abs((x - 0.181) * (0.196 - ground) - (y - ground) * (0.249 - 0.181)) / 0.087 - 0.003,
        )
        paint(img, white, self.cov(np.maximum(cross, door_in)))
        loft_out = convex(x, y, [(0.198, 0.125), (0.232, 0.125), (0.232, 0.158), (0.198, 0.158)])
        loft_in = convex(x, y, [(0.203, 0.130), (0.227, 0.130), (0.227, 0.153), (0.203, 0.153)])
        paint(img, white, self.cov(loft_out))
        paint(img, rgb(0.12, 0.09, 0.08), self.cov(loft_in))

    def fence(self) -> None:
        """A wooden post-and-rail fence along the path's left side: many small, regular edges."""
        win = self.window(-0.16, 0.12, 0.27, 0.39)
        if win is None:
            return
        rs, cs, x, y = win
        base = 0.375 - 0.28 * (x + 0.16) * 0.35
        scale = 1.0 - (x + 0.16) * 0.5  # nearer on the left: a little taller
        rel = (base - y) / scale  # height above the ground line
        span = (x > -0.16) & (x < 0.11)
        spacing = 0.045
        post_x = np.abs(((x + 0.16) / spacing + 0.5) % 1.0 - 0.5) * spacing
        post = np.maximum(post_x - 0.004 * scale, np.maximum(rel - 0.055, -rel))
        rails = np.minimum(np.abs(rel - 0.045), np.abs(rel - 0.022)) - 0.0035 * scale
        wood = rgb(0.52, 0.40, 0.27)
        paint(self.img[rs, cs], wood * 0.8, self.cov(rails) * span)
        paint(self.img[rs, cs], wood, self.cov(post) * span)
        cap = np.maximum(post_x - 0.004 * scale, np.abs(rel - 0.054) - 0.0015)
        paint(self.img[rs, cs], wood * 1.35, self.cov(cap) * span)

    def tree(self) -> None:
        """A broadleaf tree on the left: tapering trunk, lumpy sunlit canopy, and its shadow."""
        tx, base = -0.31, 0.40
        win = self.window(-0.56, -0.04, -0.14, 0.46)
        if win is None:
            return
        rs, cs, x, y = win
        img = self.img[rs, cs]
        xs, ys = self.xs[cs], self.ys[rs]
        shadow = ((x - (tx + 0.09)) / 0.14) ** 2 + ((y - (base + 0.012)) / 0.025) ** 2 - 1.0
        img *= (1 - 0.4 * smooth(0.3, -0.4, shadow))[..., None]
        lean = (base - y) * 0.08
        half = 0.011 + 0.012 * np.clip((y - 0.25) / 0.15, 0.0, 1.0) ** 2
        trunk = np.maximum(np.abs(x - tx - lean) - half, np.maximum(y - base, 0.14 - y))
        bark = fbm2(xs, ys, self.key(90), 90.0, 4, self.px, stretch=(3.0, 0.4))
        side = np.clip((x - tx - lean) / half, -1.0, 1.0)
        trunk_col = rgb(0.38, 0.26, 0.16) * ((0.9 - 0.35 * side) * (0.6 + 0.7 * bark))[..., None]
        paint(img, trunk_col, self.cov(trunk))
        # Canopy: a union of blobs with a noisy outline.
        blobs = [
            (-0.31, 0.06, 0.115),
            (-0.39, 0.13, 0.085),
            (-0.225, 0.125, 0.09),
            (-0.31, 0.17, 0.075),
            (-0.36, 0.03, 0.07),
            (-0.255, 0.035, 0.075),
        ]
        d = None
        for bx, by, r in blobs:
            e = np.sqrt((x - bx) ** 2 + (y - by) ** 2) - r
            d = e if d is None else np.minimum(d, e)
        leaves = fbm2(xs, ys, self.key(91), 14.0, 8, self.px, gain=0.6)
        d = d + (leaves - 0.5) * 0.09
        sx, sy = self.sun
        cxy = (-0.31, 0.10)
        lx, ly = sx - cxy[0], sy - cxy[1]
        n = math.hypot(lx, ly)
        toward = ((x - cxy[0]) * (lx / n) + (y - cxy[1]) * (ly / n)) / 0.16
        light = np.clip(0.5 + 0.45 * toward + (leaves - 0.5) * 1.6 - np.clip(-d, 0, 0.05) * 2, 0.0, 1.0)
        fine = fbm2(xs, ys, self.key(92), 110.0, 3, self.px)
        dark, bright = rgb(0.06, 0.20, 0.06), rgb(0.45, 0.66, 0.20)
        col = dark + (bright - dark) * (light * (0.7 + 0.6 * fine))[..., None]
        paint(img, col, self.cov(d))

    def finish(self) -> np.ndarray:
        img = self.img
        # Vignette relative to the frame (not the world square), so every aspect ratio darkens alike.
        x = self.xs[None, :] * np.float32(self.s / self.w * 2)
        y = self.ys[:, None] * np.float32(self.s / self.h * 2)
        vignette = 1.0 - 0.18 * np.clip(x * x + y * y - 0.45, 0.0, None)
        img *= vignette[..., None]
        # Gentle S-curve for photo-like contrast, then sensor grain (per pixel, hence any-resolution).
        img = np.clip(img, 0.0, 1.0)
        img = img + 0.12 * img * (1 - img) * (2 * img - 1)
        rows = np.arange(self.h, dtype=np.int64)[:, None]
        cols = np.arange(self.w, dtype=np.int64)[None, :]
        grain = lattice(cols, rows, self.key(100)) - np.float32(0.5)
        img = img + grain[..., None] * np.float32(0.025)
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def test_image(width: int = 224, height: int = 224, seed: int = 0) -> Image.Image:
    """A photo-like outdoor scene drawn by glnet itself, the input used when the user gives no --input.

    Sky with clouds and sun, hazy mountain ridges, a meadow with flowers, a lake, a red barn, a fence
    and a tree: edges, textures and colours for a convnet to respond to. Deterministic for a seed; the
    composition does not depend on the size, which only adds detail (and view, for other aspect ratios).
    """
    width, height = check_side(width, "width"), check_side(height, "height")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    return Image.fromarray(_Scene(width, height, int(seed)).render())


test_image.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def test_signal(channels: int, length: int, seed: int = 0) -> np.ndarray:
    """A speech-like 1-D test input (channels, length), float32 in about [-1, 1]: a gliding harmonic tone
    under syllable-like bursts, plus a little noise; the default for (N, C, L) models. Deterministic."""
    rng = np.random.default_rng(stream_key(int(seed), 77))
    t = np.linspace(0.0, 1.0, length, endpoint=False, dtype=np.float64)
    out = np.empty((channels, length), np.float32)
    for c in range(channels):
        f0 = 40.0 + 20.0 * c + 15.0 * np.sin(2 * np.pi * 1.5 * t)  # cycles over the clip: a slow glide
        phase = 2 * np.pi * np.cumsum(f0) / length
        tone = sum(np.sin(k * phase) / k for k in (1, 2, 3, 5))
        bursts = np.clip(np.sin(2 * np.pi * (3.0 + rng.uniform(-0.5, 0.5)) * t), 0, None) ** 2
        wave = 0.6 * tone * (0.25 + bursts) + 0.05 * rng.standard_normal(length)
        out[c] = wave / max(1e-6, float(np.abs(wave).max()))
    return out


test_signal.__test__ = False  # type: ignore[attr-defined]
