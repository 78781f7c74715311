"""The simulated in-camera pipeline: a scene photo in, the JPEG bytes a camera would write out.

Stages, in order (``render``), all vectorised numpy on float64 linear values:

1. **linearise** the 8-bit sRGB scene (inverse sRGB EOTF, IEC 61966-2-1) and apply the image's
   **auto-exposure** gain ``e = 2^U(-EXPOSURE_STOPS, +EXPOSURE_STOPS)`` (drawn per image);
2. **optics**: Gaussian point spread function of ``blur_sigma`` pixels per channel;
3. **sensor response**: linear sRGB to camera RGB with the inverse of the camera's colour matrix,
   divided by its daylight white-balance gains (raw R and B are dimmer than G), clipped at 0;
4. **CFA sampling** with the camera's Bayer layout (RGGB, BGGR, GRBG or GBRG): one colour per
   photosite;
5. **PRNU**: ``x (1 + K)`` with the camera's fixed photo-response non-uniformity pattern ``K``
   (zero-mean Gaussian, std ``prnu_std``; Lukas, Fridrich & Goljan 2006, "Digital camera
   identification from sensor pattern noise", IEEE TIFS), generated once per camera from its
   seed at ``PRNU_SIZE`` x ``PRNU_SIZE`` photosites and cropped top-left (tiled beyond), so it is
   the same pattern for every image;
6. **noise**: Poisson-Gaussian, ``y = x + sqrt(a x + b) n`` with ``n ~ N(0, 1)`` (the
   heteroscedastic normal approximation of Foi et al. 2008, "Practical Poissonian-Gaussian noise
   modeling and fitting for single-image raw-data", IEEE TIP), clipped to the full well [0, 1]
   and quantised by an ``adc_bits`` converter;
7. **demosaicing**: bilinear, Malvar-He-Cutler (Malvar, He & Cutler 2004, "High-quality linear
   interpolation for demosaicing of Bayer-patterned color images", ICASSP) or Menon (Menon,
   Andriani & Calvagno 2007, "Demosaicing with directional filtering and a posteriori decision",
   IEEE TIP) from the ``colour-demosaicing`` package; VNG (threshold-based variable number of
   gradients) or edge-aware from OpenCV's ``cv2.demosaicing``. OpenCV's VNG takes 8-bit input
   only: the mosaic is companded with a square-root curve to 8 bits (as lossy raw formats do)
   and expanded back, a trace of its own; edge-aware runs on 16 bits;
8. **white balance** (the camera's gains times the image's AWB error ``exp(N(0, WB_JITTER^2))``
   on R and B, drawn per image) and the camera's 3 x 3 **colour matrix** to linear sRGB, clipped
   to [0, 1]. Because the sensor response of step 3 is the exact inverse, a camera leaves no
   colour cast of its own: global colour varies per image (exposure, AWB), not per camera;
9. **tone curve**: sRGB, gamma 2.2, or a filmic S-curve ``y - k sin(2 pi y) / (2 pi)`` on top
   of sRGB (``k = FILMIC_STRENGTH``);
10. **unsharp mask** ``y + amount (y - G_radius * y)`` on the luma or on each RGB channel, then
    8-bit rounding;
11. **JPEG** through Pillow with the camera's quantisation tables (``qtables=``, natural order)
    and chroma subsampling (4:4:4, 4:2:2 or 4:2:0).

The sensor is ``MARGIN`` photosites larger than the output on every side (the scene is
reflect-padded, as real sensors have border photosites outside the active area), so
demosaicing, blur and sharpening have no border artefacts; the margin is even, so the output's
top-left pixel has the CFA phase the layout's name gives. All randomness comes from the
``numpy.random.Generator`` passed in: the same scene, camera and generator state give the same
bytes. Camera-model identification context: Kirchner & Gloe 2015; Bondi et al. 2017.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from fzoo_builtins.virtual_cameras.cameras import CFA, Camera

#: size of the stored PRNU pattern, in photosites (larger sensors tile it)
PRNU_SIZE = 1024
#: auto-exposure spread, in stops either side of the metered exposure
EXPOSURE_STOPS = 0.5
#: std of the log AWB error on R and B
WB_JITTER = 0.06
#: strength k of the filmic S-curve (slope 1 - k in the toe and shoulder, 1 + k at mid-grey)
FILMIC_STRENGTH = 0.3
#: sensor border outside the output, per side (even: keeps the CFA phase)
MARGIN = 8

_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Rendered:
    """One camera output: the JPEG bytes and the per-image settings drawn for it."""

    jpeg: bytes
    exposure: float
    wb_jitter: tuple[float, float, float]


def srgb_to_linear(u: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function of values in [0, 1]."""
    u = np.asarray(u, dtype=np.float64)
    return np.where(u <= 0.04045, u / 12.92, ((u + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB transfer function of linear values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def tone_curve(x: np.ndarray, tone: str) -> np.ndarray:
    """Map linear [0, 1] values to display values: ``srgb``, ``gamma2.2`` or ``filmic``."""
    if tone == "srgb":
        return linear_to_srgb(x)
    if tone == "gamma2.2":
        return np.power(np.clip(x, 0.0, 1.0), 1.0 / 2.2)
    if tone == "filmic":
        y = linear_to_srgb(x)
        return y - FILMIC_STRENGTH * np.sin(2.0 * np.pi * y) / (2.0 * np.pi)
    raise ValueError(f"unknown tone curve {tone!r}")


def prepare_scene(photo: np.ndarray, downscale: float) -> np.ndarray:
    """Scene preparation: Lanczos downscaling (Pillow) of an 8-bit sRGB photo by ``downscale``.

    Shrinking by >= 2 averages away the photo's own demosaicing, noise and JPEG traces before a
    virtual camera adds its own; the result stays 8-bit sRGB, ``round(side / downscale)``.
    """
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError("the scene must be an 8-bit RGB array [H, W, 3]")
    h, w = photo.shape[:2]
    size = (max(1, round(w / downscale)), max(1, round(h / downscale)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))


@lru_cache(maxsize=32)
def _prnu_base(seed: int, std: float) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x50524E55]))  # "PRNU"
    k = rng.standard_normal((PRNU_SIZE, PRNU_SIZE))
    k = (k - k.mean()) / k.std() * std
    k.setflags(write=False)
    return k


def prnu_pattern(camera: Camera, height: int, width: int) -> np.ndarray:
    """The camera's fixed PRNU factor ``K`` for a ``height`` x ``width`` sensor (top-left crop)."""
    base = _prnu_base(camera.prnu_seed, camera.prnu_std)
    reps = (-(-height // PRNU_SIZE), -(-width // PRNU_SIZE))
    if reps != (1, 1):
        base = np.tile(base, reps)
    return base[:height, :width]


def cfa_masks(cfa: CFA, height: int, width: int) -> np.ndarray:
    """Boolean ``[3, H, W]`` masks of the R, G and B photosites of a Bayer layout."""
    masks = np.zeros((3, height, width), dtype=bool)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), cfa, strict=True):
        masks["RGB".index(colour), dy::2, dx::2] = True
    return masks


def mosaic(rgb: np.ndarray, cfa: CFA) -> np.ndarray:
    """Sample an ``[H, W, 3]`` image with a Bayer layout: one value per photosite ``[H, W]``."""
    masks = cfa_masks(cfa, rgb.shape[0], rgb.shape[1])
    return np.einsum("hwc,chw->hw", rgb, masks.astype(rgb.dtype))


def demosaic(raw: np.ndarray, cfa: CFA, method: str) -> np.ndarray:
    """Interpolate a Bayer mosaic ``[H, W]`` in [0, 1] to linear RGB ``[H, W, 3]`` float64."""
    if method in ("bilinear", "malvar2004", "menon2007"):
        with warnings.catch_warnings():  # it imports the deprecated scipy.ndimage.filters
            warnings.simplefilter("ignore", DeprecationWarning)
            import colour_demosaicing as cd  # imported on first use: it loads colour-science

        fn = {
            "bilinear": cd.demosaicing_CFA_Bayer_bilinear,
            "malvar2004": cd.demosaicing_CFA_Bayer_Malvar2004,
            "menon2007": cd.demosaicing_CFA_Bayer_Menon2007,
        }[method]
        return np.asarray(fn(raw, cfa), dtype=np.float64)
    if method in ("vng", "edge-aware"):
        import cv2

        suffix = "VNG" if method == "vng" else "EA"
        code = getattr(cv2, f"COLOR_Bayer{cfa}2RGB_{suffix}")
        if method == "vng":  # OpenCV's VNG is 8-bit only: square-root companding
            coded = np.round(np.sqrt(np.clip(raw, 0.0, 1.0)) * 255.0).astype(np.uint8)
            return (cv2.demosaicing(coded, code).astype(np.float64) / 255.0) ** 2
        coded16 = np.round(np.clip(raw, 0.0, 1.0) * 65535.0).astype(np.uint16)
        return cv2.demosaicing(coded16, code).astype(np.float64) / 65535.0
    raise ValueError(f"unknown demosaicing method {method!r}")


def unsharp_mask(img: np.ndarray, radius: float, amount: float, on: str) -> np.ndarray:
    """``y + amount (y - gaussian(y, radius))`` on the luma (added to R, G, B) or per channel."""
    from scipy import ndimage

    if amount <= 0 or radius <= 0:
        return img
    if on == "luma":
        y = img @ _LUMA
        detail = y - ndimage.gaussian_filter(y, radius, mode="reflect")
        return img + amount * detail[..., None]
    blurred = ndimage.gaussian_filter(img, (radius, radius, 0), mode="reflect")
    return img + amount * (img - blurred)


def encode_jpeg(pixels: np.ndarray, camera: Camera) -> bytes:
    """Write 8-bit RGB pixels as the camera's JPEG (its tables and chroma subsampling)."""
    luma, chroma = camera.qtables()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(
        buf,
        format="JPEG",
        qtables=[luma, chroma],
        subsampling=_SUBSAMPLING[camera.subsampling],
        optimize=False,
    )
    return buf.getvalue()


def draw_settings(rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The per-image auto-exposure gain and AWB error (R, G, B gains; G = 1)."""
    exposure = float(2.0 ** rng.uniform(-EXPOSURE_STOPS, EXPOSURE_STOPS))
    rb = np.exp(rng.normal(0.0, WB_JITTER, size=2))
    return exposure, np.array([rb[0], 1.0, rb[1]])


def render_pixels(
    scene: np.ndarray, camera: Camera, rng: np.random.Generator
) -> tuple[np.ndarray, float, np.ndarray]:
    """Stages 1-10 of the module docstring: 8-bit sRGB scene -> 8-bit camera pixels (pre-JPEG)."""
    from scipy import ndimage

    if scene.dtype != np.uint8 or scene.ndim != 3 or scene.shape[2] != 3:
        raise ValueError("the scene must be an 8-bit RGB array [H, W, 3]")
    h, w = scene.shape[:2]
    exposure, wb_jitter = draw_settings(rng)
    pad = ((MARGIN, MARGIN), (MARGIN, MARGIN), (0, 0))
    lin = srgb_to_linear(np.pad(scene, pad, mode="reflect") / 255.0) * exposure
    if camera.blur_sigma > 0:
        lin = ndimage.gaussian_filter(lin, (camera.blur_sigma, camera.blur_sigma, 0))
    ccm = np.array(camera.ccm, dtype=np.float64)
    gains = np.array(camera.wb_gains, dtype=np.float64)
    cam = np.clip(lin @ np.linalg.inv(ccm).T / gains, 0.0, None)
    hs, ws = cam.shape[:2]
    x = mosaic(cam, camera.cfa) * (1.0 + prnu_pattern(camera, hs, ws))
    x = x + np.sqrt(camera.noise_a * x + camera.noise_b) * rng.standard_normal((hs, ws))
    levels = float(2**camera.adc_bits - 1)
    x = np.round(np.clip(x, 0.0, 1.0) * levels) / levels
    rgb = demosaic(x, camera.cfa, camera.demosaic)
    rgb = np.clip((rgb * (gains * wb_jitter)) @ ccm.T, 0.0, 1.0)
    out = tone_curve(rgb, camera.tone)
    out = unsharp_mask(out, camera.sharpen_radius, camera.sharpen_amount, camera.sharpen_on)
    out = out[MARGIN : MARGIN + h, MARGIN : MARGIN + w]
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8), exposure, wb_jitter


def render(scene: np.ndarray, camera: Camera, rng: np.random.Generator) -> Rendered:
    """Photograph an 8-bit sRGB scene ``[H, W, 3]`` with ``camera``: its JPEG bytes."""
    pixels, exposure, wb_jitter = render_pixels(scene, camera, rng)
    return Rendered(
        jpeg=encode_jpeg(pixels, camera),
        exposure=exposure,
        wb_jitter=(float(wb_jitter[0]), float(wb_jitter[1]), float(wb_jitter[2])),
    )
