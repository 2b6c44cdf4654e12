"""The 62 characters as pen strokes: a handwriting-like second style for ``glyphs``.

Why it exists: typeset shapes and handwriting disagree most where PrivImage's
semantic query needs them to agree. Pillow's bundled font (Aileron) curls the
top of its 6 and the tail of its 9 into closed hooks, so at 8×8 both blur into
0- or 8-like blobs, and a classifier trained on them gives a handwritten 6 or 9
no votes at all (measured on ``digits``: 0 of ~87 each). People write a 6 as a
stem falling into a loop and a 9 as a loop on a straight stem. Each character
here is a few strokes (polylines and elliptic arcs) on a grid 10 units tall
(baseline 0, x-height 6.5, descenders to −3.5), drawn the way it is usually
written by hand, not copied from any font. Every variant bends the strokes
with its own smooth random warp and pen width, so no two are the same.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["PEN_STROKES", "PEN_ALTERNATES", "pen_forms", "render_pen_master"]

Point = tuple[float, float]
Stroke = list[Point]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> Stroke:
    """Points on an elliptic arc from angle a0 to a1 (degrees, y up; a1 < a0 runs clockwise)."""
    n = max(4, int(abs(a1 - a0) / 10) + 1)
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / (n - 1))),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / (n - 1)))) for i in range(n)]


def _line(*xy: float) -> Stroke:
    return [(xy[i], xy[i + 1]) for i in range(0, len(xy), 2)]


def _figure_eight() -> Stroke:
    """An 8 in one stroke: two lobes crossing in the middle (x ∝ sin 2t, y ∝ cos t)."""
    ts = [2 * math.pi * i / 48 for i in range(49)]
    return [(3 + 2.8 * math.sin(2 * t), 5 + 5 * math.cos(t)) for t in ts]


def _dot(x: float, y: float) -> Stroke:
    return [(x, y), (x, y + 0.3)]


A, L = _arc, _line

#: character → strokes; each stroke is one pen-down path
PEN_STROKES: dict[str, list[Stroke]] = {
    "0": [A(3, 5, 2.6, 5, 90, 450)],
    "1": [L(1.2, 8, 3.5, 10, 3.5, 0)],
    "2": [A(3, 7, 3, 3, 160, -30) + L(0, 0, 6, 0)],
    "3": [A(3, 7.5, 2.8, 2.5, 150, -90) + A(3, 2.6, 3, 2.6, 90, -150)],
    "4": [L(1, 10, 0, 3.5, 6, 3.5), L(4.5, 7, 4.5, 0)],
    "5": [L(5.5, 10, 1, 10, 0.6, 5.3) + A(3, 3, 3, 3, 140, -140)],
    "6": [L(4.8, 10) + A(3, 3, 2.8, 3, 150, 510)],
    "7": [L(0, 10, 6, 10, 2, 0)],
    "8": [_figure_eight()],
    "9": [A(3, 7, 2.8, 3, 0, 360) + L(5.8, 2.5) + A(3.3, 2.5, 2.5, 2.5, 0, -160)],
    "A": [L(0, 0, 3, 10, 6, 0), L(1, 3.5, 5, 3.5)],
    "B": [L(0, 0, 0, 10, 3.5, 10) + A(3.5, 7.5, 2.2, 2.5, 90, -90) + L(0, 5),
          L(3.8, 5) + A(3.8, 2.5, 2.2, 2.5, 90, -90) + L(0, 0)],
    "C": [A(3.5, 5, 3.5, 5, 45, 315)],
    "D": [L(0, 0, 0, 10, 2.5, 10) + A(2.5, 5, 3.5, 5, 90, -90) + L(0, 0)],
    "E": [L(6, 10, 0, 10, 0, 0, 6, 0), L(0, 5, 4.5, 5)],
    "F": [L(6, 10, 0, 10, 0, 0), L(0, 5, 4.5, 5)],
    "G": [A(3.5, 5, 3.5, 5, 50, 355) + L(4, 4.6)],
    "H": [L(0, 0, 0, 10), L(6, 0, 6, 10), L(0, 5, 6, 5)],
    "I": [L(3, 0, 3, 10), L(1.5, 10, 4.5, 10), L(1.5, 0, 4.5, 0)],
    "J": [L(5, 10, 5, 2.5) + A(2.5, 2.5, 2.5, 2.5, 0, -180)],
    "K": [L(0, 0, 0, 10), L(6, 10, 0, 4), L(1.8, 5.8, 6, 0)],
    "L": [L(0, 10, 0, 0, 5, 0)],
    "M": [L(0, 0, 0, 10, 3, 4, 6, 10, 6, 0)],
    "N": [L(0, 0, 0, 10, 6, 0, 6, 10)],
    "O": [A(3.5, 5, 3.5, 5, 90, 450)],
    "P": [L(0, 0, 0, 10, 3, 10) + A(3, 7.5, 2.5, 2.5, 90, -90) + L(0, 5)],
    "Q": [A(3.5, 5, 3.5, 5, 90, 450), L(4, 2, 7, -0.5)],
    "R": [L(0, 0, 0, 10, 3, 10) + A(3, 7.5, 2.5, 2.5, 90, -90) + L(0, 5), L(2.5, 5, 6, 0)],
    "S": [A(3, 7.5, 2.8, 2.5, 20, 270) + A(3, 2.5, 3, 2.5, 90, -160)],
    "T": [L(0, 10, 6, 10), L(3, 10, 3, 0)],
    "U": [L(0, 10, 0, 3) + A(3, 3, 3, 3, 180, 360) + L(6, 10)],
    "V": [L(0, 10, 3, 0, 6, 10)],
    "W": [L(0, 10, 2, 0, 4, 6, 6, 0, 8, 10)],
    "X": [L(0, 10, 6, 0), L(6, 10, 0, 0)],
    "Y": [L(0, 10, 3, 5, 6, 10), L(3, 5, 3, 0)],
    "Z": [L(0, 10, 6, 10, 0, 0, 6, 0)],
    "a": [A(2.6, 3.2, 2.6, 3.2, 0, 360), L(5.2, 6.5, 5.2, 0)],
    "b": [L(0, 10, 0, 0), A(2.6, 3.2, 2.6, 3.2, 180, 540)],
    "c": [A(3, 3.2, 3, 3.2, 45, 315)],
    "d": [L(5.2, 10, 5.2, 0), A(2.6, 3.2, 2.6, 3.2, 0, 360)],
    "e": [L(0.2, 3.2, 5.8, 3.2) + A(3, 3.2, 2.8, 3.2, 0, 320)],
    "f": [A(4.5, 8, 1.5, 2, 20, 180) + L(3, 0), L(1.5, 6, 5, 6)],
    "g": [A(2.6, 3.2, 2.6, 3.2, 0, 360), L(5.2, 6.5, 5.2, -1.5) + A(2.6, -1.5, 2.6, 2, 0, -160)],
    "h": [L(0, 10, 0, 0), L(0, 3.9) + A(2.6, 3.9, 2.6, 2.6, 180, 0) + L(5.2, 0)],
    "i": [L(2, 6.5, 2, 0), _dot(2, 8.5)],
    "j": [L(3, 6.5, 3, -1.5) + A(1.2, -1.5, 1.8, 2, 0, -150), _dot(3, 8.5)],
    "k": [L(0, 10, 0, 0), L(4.5, 6.5, 0, 2.5), L(1.5, 3.6, 5, 0)],
    "l": [L(2, 10, 2, 0)],
    "m": [L(0, 6.5, 0, 0), L(0, 4) + A(2, 4.3, 2, 2.2, 180, 0) + L(4, 0),
          L(4, 4.3) + A(6, 4.3, 2, 2.2, 180, 0) + L(8, 0)],
    "n": [L(0, 6.5, 0, 0), L(0, 3.9) + A(2.6, 3.9, 2.6, 2.6, 180, 0) + L(5.2, 0)],
    "o": [A(2.8, 3.2, 2.8, 3.2, 90, 450)],
    "p": [L(0, 6.5, 0, -3.5), A(2.6, 3.2, 2.6, 3.2, 180, 540)],
    "q": [L(5.2, 6.5, 5.2, -3.5), A(2.6, 3.2, 2.6, 3.2, 0, 360)],
    "r": [L(0, 6.5, 0, 0), L(0, 3.5) + A(3, 3.5, 3, 3, 180, 60)],
    "s": [A(2.5, 4.9, 2.3, 1.6, 20, 270) + A(2.5, 1.6, 2.5, 1.6, 90, -160)],
    "t": [L(2, 9.5, 2, 1.2) + A(3.5, 1.2, 1.5, 1.2, 180, 300), L(0, 6.5, 4.5, 6.5)],
    "u": [L(0, 6.5, 0, 2.6) + A(2.6, 2.6, 2.6, 2.6, 180, 360) + L(5.2, 6.5), L(5.2, 6.5, 5.2, 0)],
    "v": [L(0, 6.5, 2.5, 0, 5, 6.5)],
    "w": [L(0, 6.5, 1.7, 0, 3.5, 4.5, 5.3, 0, 7, 6.5)],
    "x": [L(0, 6.5, 5, 0), L(5, 6.5, 0, 0)],
    "y": [L(0, 6.5, 2.6, 0), L(5.2, 6.5, 2.6, 0, 1.2, -3.5)],
    "z": [L(0, 6.5, 5, 6.5, 0, 0, 5, 0)],
}

#: other common ways of writing a character (allographs); variants cycle through all forms
PEN_ALTERNATES: dict[str, list[list[Stroke]]] = {
    "1": [[L(1.2, 8, 3.5, 10, 3.5, 0), L(1.5, 0, 5.5, 0)]],
    "4": [[L(4.5, 0, 4.5, 10, 0, 3, 6, 3)]],
    "7": [[L(0, 10, 6, 10, 2, 0), L(1.5, 5, 5.5, 5)]],
    "8": [[A(3, 7.6, 2.4, 2.4, -90, 270), A(3, 2.6, 3, 2.6, 90, 450)]],
    "9": [[A(3, 7, 2.8, 3, 0, 360) + L(5.4, 0)]],
    "I": [[L(3, 0, 3, 10)]],
    "a": [[A(2.6, 3.2, 2.6, 3.2, 0, 360) + L(5.2, 0.5) + A(6, 0.5, 0.8, 0.5, 180, 360)]],
    "y": [[L(0, 6.5, 0, 2.6) + A(2.6, 2.6, 2.6, 2.6, 180, 360) + L(5.2, 6.5),
           L(5.2, 6.5, 5.2, -1.5) + A(2.6, -1.5, 2.6, 2, 0, -160)]],
}


def pen_forms(char: str) -> list[list[Stroke]]:
    """Every form of ``char``: the main one first, then its alternates."""
    return [PEN_STROKES[char], *PEN_ALTERNATES.get(char, [])]


#: pen width as a fraction of the 10-unit height, per variant drawn uniformly
PEN_WIDTH: tuple[float, float] = (0.16, 0.30)
#: amplitude (units) of the smooth random warp that makes each variant's strokes wobble
WOBBLE: float = 0.45


def _warp(strokes: list[Stroke], rng: np.random.Generator) -> list[np.ndarray]:
    """The strokes bent by a random smooth displacement field (two sinusoids per axis)."""
    amp = rng.uniform(0, WOBBLE, size=(2, 2))
    freq = rng.uniform(0.2, 0.6, size=(2, 2))
    phase = rng.uniform(0, 2 * math.pi, size=(2, 2))
    out = []
    for stroke in strokes:
        p = np.asarray(stroke, dtype=np.float64)
        x, y = p[:, 0], p[:, 1]
        dx = amp[0, 0] * np.sin(freq[0, 0] * y + phase[0, 0]) + amp[0, 1] * np.sin(freq[0, 1] * x + phase[0, 1])
        dy = amp[1, 0] * np.sin(freq[1, 0] * x + phase[1, 0]) + amp[1, 1] * np.sin(freq[1, 1] * y + phase[1, 1])
        out.append(np.stack([x + dx, y + dy], 1))
    return out


def render_pen_master(char: str, canvas: int, rng: np.random.Generator, form: int = 0) -> Image.Image:
    """One pen-drawn variant of ``char`` (its ``form``-th form, cycling), white on black,
    on a ``canvas``² image (not yet cut to ink)."""
    forms = pen_forms(char)
    strokes = _warp(forms[form % len(forms)], rng)
    unit = canvas / 18.0  # 13.5 units from descender to top, plus room for wobble and pen
    width = max(1, round(rng.uniform(*PEN_WIDTH) * 10 * unit))
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        # y up in glyph units → image rows down; the baseline sits 5.5 units above the bottom edge
        pts = [(float((3 + x) * unit), float(canvas - (5.5 + y) * unit)) for x, y in stroke]
        draw.line(pts, fill=255, width=width, joint="curve")
        r = width / 2
        for x, y in (pts[0], pts[-1]):  # round pen tips
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return img
