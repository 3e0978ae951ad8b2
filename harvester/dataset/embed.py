"""Image embeddings from the user's own ONNX network (a CNN or a CLIP image tower), on the CPU.

    an image file or its bytes ─► header: size, EXIF orientation, bomb check ─► reduced decode
       (JPEG DCT scaling, never below the crop) ─► RGB, upright ─► the shorter side resized to
       the input's size and the centre cropped (one bicubic resample) ─► /255, (x - mean) / std
    ─► the model (onnxruntime, CPU provider, 2 intra-op threads), NCHW or NHWC as its input
       says, in groups of its batch size when that is fixed ─► its first output (or the named
       one), (N, D) or (N, D, 1, 1) flattened ─► L2-normalised float32 (N, D)

What the input is comes from the model: its layout (the axis of size 3), a fixed or dynamic
batch, a fixed H×W or, when dynamic, `EmbedOptions.size_px` (224 by default). The mean and std
are ImageNet's unless `--preset clip` is asked for or the model's metadata_props say otherwise
(`preset` = imagenet|clip, or `image_mean` and `image_std`, three numbers each).

onnxruntime (the extra `harvest[embed]`) is imported inside the functions that need it, so that
the rest of harvest never pays for it; without it, one ConfigError says how to install it.
A model's identity is the SHA-256 of its file.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image

from harvester.config import ImagePolicy
from harvester.exceptions import ConfigError, ImageError

Floats = npt.NDArray[np.float32]
Triple = tuple[float, float, float]
DEFAULT_SIZE_PX = 224  # what every ImageNet CNN and CLIP ViT-B was trained at
INSTALL_HINT = "pip install 'harvest[embed]'"
#: What reading a bad file raises (Pillow's own errors are OSError, ValueError, SyntaxError, ...).
UNREADABLE = (OSError, ValueError, ImageError, EOFError, SyntaxError, Image.DecompressionBombError)
# The EXIF orientations as Pillow's transposes (the mapping ImageOps.exif_transpose uses).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class Preset(StrEnum):
    """A normalisation a family of models was trained with."""

    IMAGENET = "imagenet"  # torchvision's CNNs, DINOv2, timm's ImageNet models
    CLIP = "clip"  # OpenAI CLIP and OpenCLIP image towers


#: Each preset's (mean, std) per RGB channel, on pixels scaled to 0..1.
PRESETS: dict[Preset, tuple[Triple, Triple]] = {
    Preset.IMAGENET: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    Preset.CLIP: ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


class Layout(StrEnum):
    """Where the model wants the colour axis."""

    NCHW = "NCHW"  # PyTorch exports
    NHWC = "NHWC"  # TensorFlow/Keras exports


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedOptions:
    """What the user may choose; everything else is read from the model."""

    preset: Preset | None = None  # None: the model's metadata_props, else ImageNet
    size_px: int | None = None  # input side for models whose H×W is dynamic (None: 224)
    output: str | None = None  # None: the model's first output
    threads: int = 2  # intra-op threads (2 cores here: more only contends with the decoders)
    max_pixels: int = ImagePolicy().max_pixels  # the harvest's decompression-bomb limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Preprocessing:
    """How pixels become the model's input: recorded in the index, so queries match it."""

    width: int
    height: int
    layout: Layout
    mean: Triple
    std: Triple
    source: str  # where mean/std came from: "imagenet", "clip" or "model"

    def as_json(self) -> dict[str, object]:
        """The record kept in the index's manifest."""
        return {
            "width": self.width,
            "height": self.height,
            "layout": self.layout.value,
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
            "resize": "shorter side, centre crop, bicubic",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessing:
        """The inverse of `as_json`."""
        return cls(
            width=int(data["width"]),
            height=int(data["height"]),
            layout=Layout(data["layout"]),
            mean=_triple(data["mean"], "mean"),
            std=_triple(data["std"], "std"),
            source=str(data["source"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInput:
    """The model's image input as its graph declares it (None: a dynamic axis)."""

    name: str
    layout: Layout
    batch: int | None
    height: int | None
    width: int | None


# --- preprocessing (pure: no onnxruntime) -------------------------------------------------------


def prepare_image(image: Path | bytes, prep: Preprocessing, *, max_pixels: int) -> Floats:
    """One image as the model's (H, W, 3) float32 input, normalised; ImageError and Pillow's
    errors (UNREADABLE) for a file that cannot be read."""
    rgb = upright_rgb(image, cover=(prep.width, prep.height), max_pixels=max_pixels)
    cropped = centre_crop(rgb, prep.width, prep.height)
    pixels = np.asarray(cropped, dtype=np.float32) / np.float32(255.0)
    mean, std = np.asarray(prep.mean, np.float32), np.asarray(prep.std, np.float32)
    normalised: Floats = ((pixels - mean) / std).astype(np.float32)
    return normalised


def upright_rgb(image: Path | bytes, *, cover: tuple[int, int], max_pixels: int) -> Image.Image:
    """RGB in display orientation, decoded no larger than needed to cover `cover` (w, h).

    The bomb limit is checked on the header before any pixel is decoded; a JPEG is decoded
    DCT-scaled (libjpeg's 1/2, 1/4, 1/8) down to the smallest size still covering the crop.
    """
    source = io.BytesIO(image) if isinstance(image, bytes) else image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(f"decompression bomb: {width}x{height} px > {max_pixels}")
            orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1) or 1)
            turned = orientation in (5, 6, 7, 8)
            shown = (height, width) if turned else (width, height)
            scale = min(1.0, max(cover[0] / shown[0], cover[1] / shown[1]))
            if img.format == "JPEG":
                img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            rgb = img.convert("RGB")
    return rgb.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else rgb


def centre_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """The shorter side scaled to the target and the centre cut out, in one bicubic resample."""
    scale = max(width / image.width, height / image.height)
    box_w, box_h = min(image.width, width / scale), min(image.height, height / scale)
    # max(0, …): the float division can land a hair outside the image, which Pillow refuses
    left, top = max(0.0, (image.width - box_w) / 2), max(0.0, (image.height - box_h) / 2)
    box = (left, top, left + box_w, top + box_h)
    return image.resize((width, height), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def l2_normalised(vectors: Floats) -> Floats:
    """Rows scaled to unit length; an all-zero row stays zero (cosine 0 to everything)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: Floats = (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return out


def model_sha256(path: Path) -> str:
    """The model's identity: the SHA-256 of its file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- the model ------------------------------------------------------------------------------------


class Embedder:
    """A loaded ONNX image model: `embed(images)` gives unit vectors, one row per image."""

    def __init__(
        self,
        session: Any,
        *,
        path: Path,
        sha256: str,
        image_input: ModelInput,
        output: str,
        preprocessing: Preprocessing,
        max_pixels: int,
    ) -> None:
        self._session = session  # an onnxruntime.InferenceSession (untyped)
        self.path = path
        self.sha256 = sha256
        self.input = image_input
        self.output = output
        self.preprocessing = preprocessing
        self.max_pixels = max_pixels
        probe = np.zeros((1, preprocessing.height, preprocessing.width, 3), np.float32)
        self.dim = int(self.run(probe).shape[1])  # also proves the output is one vector

    @classmethod
    def load(
        cls,
        path: Path,
        options: EmbedOptions = EmbedOptions(),
        *,
        prep: Preprocessing | None = None,
        sha256: str | None = None,
    ) -> Embedder:
        """Load `path` and read its input; `prep` (an index's record) overrides the options',
        `sha256` saves hashing the file again when the caller has just done so.

        ConfigError when onnxruntime is missing, the file is not a loadable model, or the model
        is not an image model (inputs, element type, rank, channels, outputs).
        """
        if not path.is_file():
            raise ConfigError(f"{path}: no such model file")
        session = _session(path, options.threads)
        image_input = read_input(session.get_inputs())
        output = _output_name(session.get_outputs(), options.output, path)
        if prep is None:
            meta = dict(session.get_modelmeta().custom_metadata_map)
            prep = choose_preprocessing(image_input, options, meta)
        else:
            _check_fits(image_input, prep)
        return cls(
            session,
            path=path,
            sha256=sha256 or model_sha256(path),
            image_input=image_input,
            output=output,
            preprocessing=prep,
            max_pixels=options.max_pixels,
        )

    def prepare(self, image: Path | bytes) -> Floats:
        """One image as this model's (H, W, 3) input (see `prepare_image`)."""
        return prepare_image(image, self.preprocessing, max_pixels=self.max_pixels)

    def run(self, pixels: npt.NDArray[Any]) -> Floats:
        """(N, H, W, 3) prepared pixels → (N, D) unit vectors, in groups of a fixed batch size."""
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        if self.input.layout is Layout.NCHW:
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        step = self.input.batch or max(1, len(batch))
        parts = [self._run_group(batch[i : i + step], step) for i in range(0, len(batch), step)]
        return l2_normalised(np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))

    def embed(self, images: Sequence[Path | bytes]) -> Floats:
        """Unit vectors (N, D) of `images` (files or their bytes), in order."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.run(np.stack([self.prepare(image) for image in images]))

    def _run_group(self, group: Floats, fixed: int) -> Floats:
        n = len(group)
        if self.input.batch is not None and n < fixed:  # a fixed batch: pad with zeros
            pad = np.zeros((fixed - n, *group.shape[1:]), np.float32)
            group = np.concatenate([group, pad])
        try:
            (out,) = self._session.run([self.output], {self.input.name: group})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ConfigError(f"{self.path.name}: the model failed on its input: {exc}") from exc
        return flatten_output(np.asarray(out)[:n], self.output, n)

    def __repr__(self) -> str:
        p = self.preprocessing
        return (
            f"<Embedder {self.path.name} sha256={self.sha256[:12]} {p.layout} {p.width}x"
            f"{p.height} batch={self.input.batch or 'dynamic'} dim={self.dim} {p.source}>"
        )


def flatten_output(out: npt.NDArray[Any], name: str, n: int) -> Floats:
    """(N, D) or (N, D, 1, 1) → (N, D) float32; ConfigError for anything else (tokens, maps)."""
    spatial = out.shape[2:]
    if out.ndim < 2 or out.shape[0] != n or any(d != 1 for d in spatial):
        raise ConfigError(
            f"output {name!r} has shape {tuple(out.shape)} for {n} images: expected (N, D) or "
            "(N, D, 1, 1), one vector per image (export the pooled embedding)"
        )
    if not np.issubdtype(out.dtype, np.floating):
        raise ConfigError(f"output {name!r} is {out.dtype}: expected floating-point vectors")
    return np.asarray(out.reshape(n, -1), dtype=np.float32)


def read_input(inputs: Sequence[Any]) -> ModelInput:
    """The image input of an onnxruntime session (its NodeArgs); ConfigError naming what is
    wrong when the model does not take one float32 image batch."""
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ConfigError(f"the model has {len(inputs)} inputs ({names}): expected one image")
    arg = inputs[0]
    if arg.type != "tensor(float)":
        raise ConfigError(f"input {arg.name!r} is {arg.type}: expected float32 (tensor(float))")
    shape = [d if isinstance(d, int) and d > 0 else None for d in arg.shape]
    if len(shape) != 4:
        raise ConfigError(
            f"input {arg.name!r} has shape {arg.shape}: expected an image batch "
            "(N, 3, H, W) or (N, H, W, 3)"
        )
    if shape[1] == 3:
        return ModelInput(
            name=arg.name, layout=Layout.NCHW, batch=shape[0], height=shape[2], width=shape[3]
        )
    if shape[3] == 3:
        return ModelInput(
            name=arg.name, layout=Layout.NHWC, batch=shape[0], height=shape[1], width=shape[2]
        )
    raise ConfigError(f"input {arg.name!r} has shape {arg.shape}: no axis of 3 colour channels")


def choose_preprocessing(
    image_input: ModelInput, options: EmbedOptions, meta: Mapping[str, str]
) -> Preprocessing:
    """Size from the model (or the option when dynamic), mean/std from the option, else the
    model's metadata_props, else ImageNet's."""
    width, height = _size(image_input, options.size_px)
    preset = options.preset
    if preset is None and "preset" in meta:
        preset = _preset(meta["preset"])
    if preset is not None:
        mean, std = PRESETS[preset]
        source = preset.value
    elif "image_mean" in meta and "image_std" in meta:
        mean = _triple(meta["image_mean"], "image_mean")
        std = _triple(meta["image_std"], "image_std")
        source = "model"
    else:
        (mean, std), source = PRESETS[Preset.IMAGENET], Preset.IMAGENET.value
    return Preprocessing(
        width=width, height=height, layout=image_input.layout, mean=mean, std=std, source=source
    )


def _size(image_input: ModelInput, size_px: int | None) -> tuple[int, int]:
    fixed = (image_input.width, image_input.height)
    if fixed[0] is not None and fixed[1] is not None:
        if size_px is not None and (size_px, size_px) != fixed:
            raise ConfigError(
                f"the model's input is fixed at {fixed[0]}x{fixed[1]}: --size {size_px} "
                "cannot apply"
            )
        return fixed[0], fixed[1]
    side = size_px or DEFAULT_SIZE_PX
    return fixed[0] or side, fixed[1] or side


def _check_fits(image_input: ModelInput, prep: Preprocessing) -> None:
    fixed = (image_input.width or prep.width, image_input.height or prep.height)
    if image_input.layout is not prep.layout or fixed != (prep.width, prep.height):
        raise ConfigError(
            f"the model takes {image_input.layout} {fixed[0]}x{fixed[1]}, but its index was "
            f"made with {prep.layout} {prep.width}x{prep.height}"
        )


def _preset(text: str) -> Preset:
    try:
        return Preset(text.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in Preset)
        raise ConfigError(f"the model's metadata names preset {text!r}: known: {known}") from None


def _triple(value: object, what: str) -> Triple:
    """Three numbers from a list or from text such as "0.5,0.5,0.5" or "[0.5, 0.5, 0.5]"."""
    items: Sequence[object] = ()
    if isinstance(value, str):
        items = value.strip("[] ").split(",")
    elif isinstance(value, Sequence):
        items = value
    try:
        numbers = tuple(float(str(v)) for v in items)
    except ValueError:
        numbers = ()
    if len(numbers) != 3:
        raise ConfigError(f"{what} must be three numbers (R, G, B), got {value!r}")
    return numbers[0], numbers[1], numbers[2]


def _output_name(outputs: Sequence[Any], wanted: str | None, path: Path) -> str:
    names = [o.name for o in outputs]
    if not names:
        raise ConfigError(f"{path.name}: the model has no output")
    if wanted is None:
        return str(names[0])
    if wanted not in names:
        raise ConfigError(f"{path.name} has no output {wanted!r}: its outputs are {names}")
    return wanted


def _session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session on `path`; ConfigError without onnxruntime or a bad file."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors are untyped (InvalidProtobuf, Fail, ...)
        raise ConfigError(f"{path}: not a model onnxruntime can load: {exc}") from exc


def import_onnxruntime() -> Any:
    """The onnxruntime module; ConfigError saying how to get it where it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"--embedder needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime
