"""The virtual camera models: every parameter of the simulated imaging pipeline, per camera.

Each :class:`Camera` is a frozen dataclass; :data:`CAMERAS` lists the built-in models by name.
They differ the way real camera models do (Kirchner & Gloe 2015, "Forensic camera model
identification"; Bondi et al. 2017): colour filter array layout, demosaicing algorithm, optics,
sensor noise level and bit depth, the sensor's fixed PRNU pattern (Lukas, Fridrich & Goljan 2006),
colour processing, tone curve, sharpening and the JPEG encoder (quality, quantisation tables,
chroma subsampling). Colour processing is *neutral by construction* (the raw response is the
inverse of the colour matrix, see ``pipeline.py``), so global colour carries no camera identity:
the identity lives in the high-frequency traces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

CFA = Literal["RGGB", "BGGR", "GRBG", "GBRG"]
Demosaic = Literal["bilinear", "malvar2004", "menon2007", "vng", "edge-aware"]
Tone = Literal["srgb", "gamma2.2", "filmic"]
QTableStyle = Literal["ijg", "flat", "radial"]
Subsampling = Literal["4:4:4", "4:2:2", "4:2:0"]

#: ITU-T T.81 Annex K tables (natural row-major order), the base of the IJG/libjpeg tables
ANNEX_K_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
ANNEX_K_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)


def base_tables(style: QTableStyle) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled (quality-50) luma and chroma quantisation tables of a table family.

    ``ijg``: the Annex K tables that libjpeg and most software use. ``flat``: a maker-style
    table with a gentle linear rise with frequency, ``10 + 3 (u + v)`` (luma) and
    ``14 + 5 (u + v)`` (chroma), like many cameras' "fine" tables. ``radial``: a smooth radial
    table ``8 + 9 sqrt(u^2 + v^2)`` (luma), ``12 + 13 sqrt(u^2 + v^2)`` (chroma), like several
    phone encoders. ``u`` is the vertical, ``v`` the horizontal frequency index (0..7).
    """
    u, v = np.mgrid[0:8, 0:8].astype(np.float64)
    if style == "ijg":
        return np.array(ANNEX_K_LUMA, np.float64), np.array(ANNEX_K_CHROMA, np.float64)
    if style == "flat":
        return 10.0 + 3.0 * (u + v), 14.0 + 5.0 * (u + v)
    if style == "radial":
        r = np.sqrt(u * u + v * v)
        return 8.0 + 9.0 * r, 12.0 + 13.0 * r
    raise ValueError(f"unknown quantisation table style {style!r}")


def scale_table(base: np.ndarray, quality: int) -> np.ndarray:
    """IJG quality scaling: ``s = 5000/q`` (q < 50) or ``200 - 2q``; ``T = (B s + 50) // 100``,
    clipped to the baseline range 1..255."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    s = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return np.clip(np.floor((base * s + 50.0) / 100.0), 1, 255).astype(np.int64)


@dataclass(frozen=True)
class Camera:
    """One simulated camera model; all values are used by ``pipeline.render``.

    Units: the sensor works in linear raw values in [0, 1] (1 = full well / white clip).
    ``noise_a`` and ``noise_b`` are the Poisson-Gaussian parameters of Foi et al. 2008
    (variance ``a x + b``); ``prnu_std`` is the standard deviation of the PRNU factor ``K``
    (``x (1 + K)``), drawn once from ``prnu_seed``. ``wb_gains`` are the camera's daylight white
    balance gains (the raw R and B responses are ``1/gain`` of green's); ``ccm`` maps white-
    balanced camera RGB to linear sRGB (rows sum to 1, so white stays white).
    """

    name: str
    description: str
    cfa: CFA
    demosaic: Demosaic
    blur_sigma: float  # optics: Gaussian PSF sigma in pixels on the linear scene (0 = none)
    noise_a: float  # Poisson (shot) part of the noise variance, a * x
    noise_b: float  # Gaussian (read) part of the noise variance
    adc_bits: int  # raw quantisation
    prnu_std: float  # std of the fixed PRNU pattern K (0.01-0.03)
    prnu_seed: int
    wb_gains: tuple[float, float, float]
    ccm: tuple[tuple[float, float, float], ...]
    tone: Tone
    sharpen_radius: float  # unsharp mask: Gaussian sigma, pixels
    sharpen_amount: float  # unsharp mask gain (0 = off)
    sharpen_on: Literal["luma", "rgb"]
    jpeg_quality: int
    qtable_style: QTableStyle
    subsampling: Subsampling

    def qtables(self) -> tuple[list[int], list[int]]:
        """The luma and chroma quantisation tables this camera writes (natural order, 64 each)."""
        luma, chroma = base_tables(self.qtable_style)
        return (
            scale_table(luma, self.jpeg_quality).ravel().tolist(),
            scale_table(chroma, self.jpeg_quality).ravel().tolist(),
        )

    def summary(self) -> dict[str, Any]:
        """The parameters as plain JSON values (what a record's ``meta`` carries)."""
        out = asdict(self)
        out.pop("description")
        out["wb_gains"] = list(self.wb_gains)
        out["ccm"] = [list(row) for row in self.ccm]
        return out


CAMERAS: dict[str, Camera] = {
    cam.name: cam
    for cam in (
        Camera(
            name="compact-ccd",
            description="2000s compact: soft lens, bilinear demosaicing, strong RGB sharpening",
            cfa="RGGB",
            demosaic="bilinear",
            blur_sigma=0.6,
            noise_a=3e-4,
            noise_b=4e-6,
            adc_bits=12,
            prnu_std=0.025,
            prnu_seed=1101,
            wb_gains=(1.9, 1.0, 1.6),
            ccm=((1.55, -0.40, -0.15), (-0.22, 1.42, -0.20), (0.02, -0.52, 1.50)),
            tone="gamma2.2",
            sharpen_radius=1.2,
            sharpen_amount=0.9,
            sharpen_on="rgb",
            jpeg_quality=88,
            qtable_style="ijg",
            subsampling="4:2:2",
        ),
        Camera(
            name="dslr-aps",
            description="APS-C DSLR: clean 14-bit sensor, Malvar-He-Cutler, fine maker tables",
            cfa="BGGR",
            demosaic="malvar2004",
            blur_sigma=0.3,
            noise_a=1e-4,
            noise_b=1e-6,
            adc_bits=14,
            prnu_std=0.01,
            prnu_seed=2202,
            wb_gains=(2.1, 1.0, 1.45),
            ccm=((1.72, -0.58, -0.14), (-0.18, 1.50, -0.32), (0.04, -0.46, 1.42)),
            tone="srgb",
            sharpen_radius=0.8,
            sharpen_amount=0.4,
            sharpen_on="luma",
            jpeg_quality=96,
            qtable_style="flat",
            subsampling="4:2:2",
        ),
        Camera(
            name="phone-a",
            description="smartphone: small noisy pixels, Menon demosaicing, filmic tone, 4:2:0",
            cfa="GRBG",
            demosaic="menon2007",
            blur_sigma=0.4,
            noise_a=5e-4,
            noise_b=8e-6,
            adc_bits=10,
            prnu_std=0.02,
            prnu_seed=3303,
            wb_gains=(2.0, 1.0, 1.7),
            ccm=((1.80, -0.66, -0.14), (-0.30, 1.62, -0.32), (-0.02, -0.60, 1.62)),
            tone="filmic",
            sharpen_radius=1.0,
            sharpen_amount=1.2,
            sharpen_on="luma",
            jpeg_quality=92,
            qtable_style="radial",
            subsampling="4:2:0",
        ),
        Camera(
            name="phone-b",
            description="smartphone: VNG demosaicing (8-bit companded), strongest PRNU, 4:2:0",
            cfa="GBRG",
            demosaic="vng",
            blur_sigma=0.4,
            noise_a=4e-4,
            noise_b=6e-6,
            adc_bits=10,
            prnu_std=0.03,
            prnu_seed=4404,
            wb_gains=(1.8, 1.0, 1.9),
            ccm=((1.60, -0.48, -0.12), (-0.26, 1.46, -0.20), (0.00, -0.44, 1.44)),
            tone="filmic",
            sharpen_radius=0.7,
            sharpen_amount=0.8,
            sharpen_on="luma",
            jpeg_quality=90,
            qtable_style="ijg",
            subsampling="4:2:0",
        ),
        Camera(
            name="mirrorless",
            description="mirrorless: sharp lens, edge-aware demosaicing, high quality 4:4:4",
            cfa="RGGB",
            demosaic="edge-aware",
            blur_sigma=0.25,
            noise_a=1.5e-4,
            noise_b=2e-6,
            adc_bits=14,
            prnu_std=0.015,
            prnu_seed=5505,
            wb_gains=(2.2, 1.0, 1.5),
            ccm=((1.66, -0.52, -0.14), (-0.20, 1.48, -0.28), (0.02, -0.50, 1.48)),
            tone="srgb",
            sharpen_radius=0.6,
            sharpen_amount=0.5,
            sharpen_on="rgb",
            jpeg_quality=97,
            qtable_style="radial",
            subsampling="4:4:4",
        ),
        Camera(
            name="action-cam",
            description="action camera: wide cheap lens, noisy 10-bit sensor, strong compression",
            cfa="GBRG",
            demosaic="malvar2004",
            blur_sigma=0.8,
            noise_a=6e-4,
            noise_b=1.5e-5,
            adc_bits=10,
            prnu_std=0.02,
            prnu_seed=6606,
            wb_gains=(1.7, 1.0, 1.8),
            ccm=((1.50, -0.36, -0.14), (-0.24, 1.40, -0.16), (0.00, -0.40, 1.40)),
            tone="gamma2.2",
            sharpen_radius=1.5,
            sharpen_amount=1.0,
            sharpen_on="rgb",
            jpeg_quality=80,
            qtable_style="flat",
            subsampling="4:2:0",
        ),
    )
}


def get_camera(name: str) -> Camera:
    """A built-in camera by name; ``ValueError`` lists the names when it is unknown."""
    try:
        return CAMERAS[name]
    except KeyError:
        raise ValueError(f"unknown camera {name!r}; available: {', '.join(CAMERAS)}") from None
