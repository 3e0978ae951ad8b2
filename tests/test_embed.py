"""`harvest index` and the embedding search, on small ONNX models the tests build themselves.

No model weights can be downloaded here, so each test makes its network with `onnx.helper`
(a seeded Conv → ReLU → GlobalAveragePool → Flatten: colour and texture statistics, enough for
a turned or recompressed copy to stay near its photo) and runs the real loading,
preprocessing, batching, normalisation, index and search code on it with onnxruntime.
"""

from __future__ import annotations

import io
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from skimage import data as skdata

from harvester.dataset import vectors
from harvester.dataset.embed import (
    PRESETS,
    Embedder,
    EmbedOptions,
    Layout,
    Preprocessing,
    Preset,
    centre_crop,
    model_sha256,
    prepare_image,
    upright_rgb,
)
from harvester.dataset.vectors import IndexSpec, IndexWriter, VectorIndex, index_dir
from harvester.embedding import BatchDone, EmbeddingSearch, embed_query, run_index
from harvester.exceptions import ConfigError, ImageError
from harvester.store.sqlite import Store
from tests.harness import (
    ThreadedEmulator,
    harvest,
    harvest_keywords,
    store_rows,
    threaded_emulator,
)
from tests.onnx_models import conv_model, graph_model

Pixels = npt.NDArray[np.uint8]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")

# --- models ----------------------------------------------------------------------------------


def int_input_model(path: Path) -> Path:
    """Takes int64 pixels (a cast inside): not a float32 image input."""
    x = helper.make_tensor_value_info("pixels", TensorProto.INT64, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])
    nodes = [
        helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("GlobalAveragePool", ["f"], ["g"]),
        helper.make_node("Flatten", ["g"], ["embedding"]),
    ]
    onnx.save(graph_model(nodes, [x], [y], {}), path)
    return path


def rank2_model(path: Path) -> Path:
    """Takes (N, 192) feature rows: no image axes."""
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 192])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4])
    weights = {"m": np.ones((192, 4), np.float32)}
    nodes = [helper.make_node("MatMul", ["features", "m"], ["embedding"])]
    onnx.save(graph_model(nodes, [x], [y], weights), path)
    return path


def two_input_model(path: Path) -> Path:
    """An image and a second input (a text tower's ids, say)."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 8, 8])
    t = helper.make_tensor_value_info("other", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3, 8, 8])
    nodes = [helper.make_node("Add", ["pixels", "other"], ["embedding"])]
    onnx.save(graph_model(nodes, [x, t], [y], {}), path)
    return path


# --- images and stores -------------------------------------------------------------------------


def photo(name: str, side: int = 240) -> Pixels:
    """A scikit-image colour photograph, its long side `side` px."""
    image = Image.fromarray(np.asarray(getattr(skdata, name)())[:, :, :3])
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image.convert("RGB"))


def jpeg(pixels: Pixels, quality: int = 90, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, exif=exif or b"")
    return buffer.getvalue()


def png(pixels: Pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def oriented(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def photo_files() -> dict[int, bytes]:
    """Photo id → JPEG: six photographs, then a turned and a shrunk copy of the first two."""
    files = {100 + i: jpeg(photo(name)) for i, name in enumerate(PHOTOS)}
    for i, name in enumerate(PHOTOS[:2]):
        files[200 + i] = jpeg(np.rot90(photo(name)).copy(), quality=70)
        files[300 + i] = jpeg(photo(name, side=150), quality=75)
    return files


def add_photos(out: Path, files: dict[int, bytes | None]) -> None:
    """Done photos in the store of `out` (created if need be), their files under out/k/
    (None: the row only, its file missing)."""
    with Store.in_dir(out) as store, store.transaction() as db:
        for pid, content in files.items():
            path = f"k/00001/{pid}.jpg"
            if content is not None:
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                (out / path).write_bytes(content)
            db.execute(
                "INSERT INTO photos (id, keyword, status, path, record, seq, claimed_at)"
                " VALUES (?, 'k', 'done', ?, '{}', ?, 0)",
                (pid, path, pid),
            )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return conv_model(tmp_path / "texture.onnx")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    target = tmp_path / "out"
    target.mkdir()
    add_photos(target, dict(photo_files()))
    return target


def vectors_by_id(out: Path, model: Path) -> dict[int, npt.NDArray[np.float32]]:
    index = VectorIndex.open(out, model_sha256(model))
    assert index is not None
    return {int(i): v for i, v in zip(index.ids, _all_vectors(index), strict=True)}


def _all_vectors(index: VectorIndex) -> npt.NDArray[np.float32]:
    """Every vector in index order (identity queries: each vector's own cosine is 1)."""
    found = [index.search(np.eye(index.spec.dim)[d], index.count) for d in range(index.spec.dim)]
    by_id = [{pid: score for pid, score in hits} for hits in found]
    return np.array([[column[int(i)] for column in by_id] for i in index.ids], np.float32)


# --- preprocessing ------------------------------------------------------------------------------

IMAGENET = Preprocessing(
    width=24, height=24, layout=Layout.NCHW, mean=PRESETS[Preset.IMAGENET][0],
    std=PRESETS[Preset.IMAGENET][1], source="imagenet",
)  # fmt: skip


def normalised(rgb: Sequence[int], prep: Preprocessing) -> npt.NDArray[np.float64]:
    value: npt.NDArray[np.float64] = (np.asarray(rgb) / 255 - prep.mean) / np.asarray(prep.std)
    return value


@pytest.mark.parametrize("preset", list(Preset))
def test_a_known_image_gives_known_values(preset: Preset) -> None:
    # 96×48: red | green | blue thirds. The shorter side goes 48 → 24 (scale 1/2), and the
    # centre 24×24 is source columns 24..72: red, then green, then blue.
    pixels = np.zeros((48, 96, 3), np.uint8)
    pixels[:, :32] = (255, 0, 0)
    pixels[:, 32:64] = (0, 255, 0)
    pixels[:, 64:] = (0, 0, 255)
    mean, std = PRESETS[preset]
    prep = Preprocessing(
        width=24, height=24, layout=Layout.NCHW, mean=mean, std=std, source=preset.value
    )
    tensor = prepare_image(png(pixels), prep, max_pixels=10**6)
    assert tensor.shape == (24, 24, 3)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[12, 1], normalised((255, 0, 0), prep), atol=1e-5)
    for column in (6, 12, 17):  # squashed instead of cropped, 6 would be red and 17 blue
        np.testing.assert_allclose(tensor[12, column], normalised((0, 255, 0), prep), atol=1e-5)
    np.testing.assert_allclose(tensor[3, 22], normalised((0, 0, 255), prep), atol=1e-5)


def test_exif_orientation_is_applied() -> None:
    # Stored 64×32 with red on the left, blue on the right; orientation 6 turns it 90° clockwise
    # for display, so red is on top. The 16×16 crop is display rows 16..48 of 64.
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32] = (255, 0, 0)
    pixels[:, 32:] = (0, 0, 255)
    red, blue = normalised((255, 0, 0), IMAGENET), normalised((0, 0, 255), IMAGENET)
    prep = Preprocessing(
        width=16, height=16, layout=Layout.NCHW, mean=IMAGENET.mean, std=IMAGENET.std,
        source="imagenet",
    )  # fmt: skip
    turned = prepare_image(jpeg(pixels, 95, oriented(6)), prep, max_pixels=10**6)
    np.testing.assert_allclose(turned[2, 8], red, atol=0.1)
    np.testing.assert_allclose(turned[13, 8], blue, atol=0.1)
    upright = prepare_image(jpeg(pixels, 95), prep, max_pixels=10**6)
    np.testing.assert_allclose(upright[8, 2], red, atol=0.1)
    np.testing.assert_allclose(upright[8, 13], blue, atol=0.1)


def test_a_big_jpeg_is_decoded_reduced_to_the_same_picture() -> None:
    # 1600×1066 for a 24×24 input: libjpeg's 1/8 scale (200×134) still covers the crop.
    big = np.asarray(Image.fromarray(photo("coffee", 400)).resize((1600, 1066)))
    data = jpeg(big, 95)
    assert upright_rgb(data, cover=(24, 24), max_pixels=10**8).size == (200, 134)
    reduced = prepare_image(data, IMAGENET, max_pixels=10**8)
    full = centre_crop(Image.open(io.BytesIO(data)).convert("RGB"), 24, 24)
    reference = (np.asarray(full) / 255 - IMAGENET.mean) / IMAGENET.std
    # 0.037 measured, ~2.5 grey levels (a different photo is 1.05 away)
    assert np.abs(reduced - reference).mean() < 0.06


def test_a_decompression_bomb_is_refused_on_its_header() -> None:
    with pytest.raises(ImageError, match="decompression bomb"):
        prepare_image(png(np.zeros((200, 300, 3), np.uint8)), IMAGENET, max_pixels=10_000)


# --- the model ---------------------------------------------------------------------------------


def test_batches_give_the_vectors_of_one_image_at_a_time(model: Path) -> None:
    embedder = Embedder.load(model)
    images = list(photo_files().values())
    together = embedder.embed(images)
    alone = np.concatenate([embedder.embed([image]) for image in images])
    assert together.shape == (len(images), 32)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("variant", "expected_batch"),
    [
        ({"batch": 4}, 4),  # a fixed batch: 10 images go as 4 + 4 + 2 padded
        ({"batch": 1}, 1),
        ({"layout": Layout.NHWC}, None),
        ({"flatten": False}, None),  # (N, D, 1, 1) out
        ({"size": "dynamic"}, None),  # H, W dynamic: --size 64
    ],
)
def test_every_input_form_gives_the_same_vectors(
    tmp_path: Path, model: Path, variant: dict[str, object], expected_batch: int | None
) -> None:
    images = list(photo_files().values())
    reference = Embedder.load(model).embed(images)
    other = conv_model(tmp_path / "variant.onnx", **variant)  # type: ignore[arg-type]
    embedder = Embedder.load(other, EmbedOptions(size_px=64))
    assert embedder.input.batch == expected_batch
    assert embedder.preprocessing.layout is variant.get("layout", Layout.NCHW)
    np.testing.assert_allclose(embedder.embed(images), reference, atol=1e-5)


def test_the_input_size_comes_from_the_model_or_the_option(tmp_path: Path) -> None:
    dynamic = conv_model(tmp_path / "dynamic.onnx", size="dynamic")
    prep = Embedder.load(dynamic).preprocessing
    assert (prep.width, prep.height) == (224, 224)
    assert Embedder.load(dynamic, EmbedOptions(size_px=96)).preprocessing.height == 96
    fixed = conv_model(tmp_path / "fixed.onnx", size=64)
    with pytest.raises(ConfigError, match="fixed at 64x64"):
        Embedder.load(fixed, EmbedOptions(size_px=96))


@pytest.mark.parametrize(
    ("metadata", "preset", "source", "mean"),
    [
        ({}, None, "imagenet", PRESETS[Preset.IMAGENET][0]),
        ({}, Preset.CLIP, "clip", PRESETS[Preset.CLIP][0]),
        ({"preset": "CLIP"}, None, "clip", PRESETS[Preset.CLIP][0]),
        ({"preset": "clip"}, Preset.IMAGENET, "imagenet", PRESETS[Preset.IMAGENET][0]),
        ({"image_mean": "0.5,0.5,0.5", "image_std": "[0.2, 0.2, 0.2]"}, None, "model", (0.5,) * 3),
    ],
)  # fmt: skip
def test_the_normalisation_comes_from_the_option_then_the_metadata(
    tmp_path: Path,
    metadata: dict[str, str],
    preset: Preset | None,
    source: str,
    mean: tuple[float, ...],
) -> None:
    path = conv_model(tmp_path / "m.onnx", metadata=metadata)
    prep = Embedder.load(path, EmbedOptions(preset=preset)).preprocessing
    assert (prep.source, prep.mean) == (source, mean)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (int_input_model, r"input 'pixels' is tensor\(int64\): expected float32"),
        (rank2_model, r"input 'features' has shape \['N', 192\]: expected an image batch"),
        (two_input_model, r"2 inputs \(pixels, other\): expected one image"),
        (lambda p: conv_model(p, pooled=False), r"shape \(1, 32, 64, 64\) .*expected \(N, D\)"),
        (lambda p: p.write_bytes(b"not a model") and p, "not a model onnxruntime can load"),
    ],
)
def test_a_model_that_is_not_an_image_embedder_is_refused(
    tmp_path: Path, build: object, message: str
) -> None:
    path = build(tmp_path / "bad.onnx")  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        Embedder.load(path)


def test_a_named_output_must_exist(model: Path) -> None:
    assert Embedder.load(model, EmbedOptions(output="embedding")).output == "embedding"
    with pytest.raises(ConfigError, match=r"no output 'logits': its outputs are \['embedding'\]"):
        Embedder.load(model, EmbedOptions(output="logits"))


def test_without_onnxruntime_one_clear_error(
    model: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.raises(ConfigError, match=r"pip install 'harvest\[embed\]'"):
        Embedder.load(model)
    assert harvest("index", out, "--embedder", model, "--plain") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["harvest: --embedder needs onnxruntime: pip install 'harvest[embed]'"]


def test_a_turned_or_recompressed_copy_is_nearer_than_other_photos(model: Path) -> None:
    files = photo_files()
    embedder = Embedder.load(model)
    ids = list(files)
    vecs = embedder.embed(list(files.values()))
    cosines = vecs @ vecs.T
    np.fill_diagonal(cosines, -2)
    for copy, original in ((200, 100), (201, 101), (300, 100), (301, 101)):
        row = ids.index(copy)
        nearest = ids[int(np.argmax(cosines[row]))]
        assert nearest in {original, copy + 100 if copy < 300 else copy - 100}, (copy, nearest)
        others = [c for i, c in zip(ids, cosines[row], strict=True) if i % 100 != original % 100]
        assert cosines[row, ids.index(original)] > max(others)


# --- the index ---------------------------------------------------------------------------------


def test_every_stored_photo_is_indexed_and_finds_itself(out: Path, model: Path) -> None:
    report = run_index(out, model, batch=4)
    stored = {pid for (pid,) in store_rows(out, "SELECT id FROM photos")}
    assert (report.stored, report.embedded, report.skipped, report.count) == (10, 10, 0, 10)
    index = VectorIndex.open(out, model_sha256(model))
    assert index is not None
    assert set(index.ids.tolist()) == stored
    assert index.directory == out / "harvest.vectors" / model_sha256(model)[:16]
    search = EmbeddingSearch.open(out, model)
    for pid, content in photo_files().items():
        hits = search.query(content, k=3)
        assert hits[0][0] == pid
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert [h[1] for h in hits] == sorted((h[1] for h in hits), reverse=True)
    assert embed_query(out, model, out / "k/00001/100.jpg", k=1)[0][0] == 100


def test_an_interrupted_run_resumes_with_each_photo_once(
    out: Path, model: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    shutil.copytree(out, whole)
    run_index(whole, model, batch=3)
    seen: list[BatchDone] = []

    def stop_after_two(done: BatchDone) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_index(out, model, batch=3, on_batch=stop_after_two)
    half = VectorIndex.open(out, model_sha256(model))
    assert half is not None
    assert half.count == 6
    report = run_index(out, model, batch=3)
    assert (report.already, report.embedded, report.count) == (6, 4, 10)
    index = VectorIndex.open(out, model_sha256(model))
    assert index is not None
    assert len(set(index.ids.tolist())) == len(index.ids) == 10
    resumed, fresh = vectors_by_id(out, model), vectors_by_id(whole, model)
    assert resumed.keys() == fresh.keys()
    for pid, vector in fresh.items():
        np.testing.assert_allclose(resumed[pid], vector, atol=1e-6)


def test_a_kill_loses_at_most_the_batch_in_flight(out: Path, tmp_path: Path) -> None:
    files = list(photo_files().values())
    add_photos(out, {1000 + i: files[i % len(files)] for i in range(150)})  # 160 photos
    model = conv_model(tmp_path / "dynamic.onnx", size="dynamic")
    chunks = index_dir(out, model_sha256(model)) / "chunks"
    args = ["index", str(out), "--embedder", str(model), "--batch", "2", "--size", "256"]
    child = subprocess.Popen(
        [sys.executable, "-m", "harvester.cli", *args, "--plain"], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        if chunks.is_dir() and len(list(chunks.glob("0*"))) >= 3:
            child.kill()
            break
        time.sleep(0.01)
    assert child.wait(timeout=30) == -signal.SIGKILL, "killed while indexing"
    killed = VectorIndex.open(out, model_sha256(model))
    assert killed is not None
    assert 6 <= killed.count < 160
    assert len(set(killed.ids.tolist())) == killed.count
    assert harvest(*args, "--plain") == 0
    index = VectorIndex.open(out, model_sha256(model))
    assert index is not None
    assert sorted(index.ids.tolist()) == sorted(
        pid for (pid,) in store_rows(out, "SELECT id FROM photos")
    )
    assert not [p for p in chunks.iterdir() if p.name.startswith(".tmp-")]


def test_photos_harvested_later_are_embedded_on_the_next_run(out: Path, model: Path) -> None:
    run_index(out, model)
    add_photos(out, {400: jpeg(photo("retina")), 401: jpeg(photo("colorwheel"))})
    report = run_index(out, model)
    assert (report.already, report.embedded, report.count) == (10, 2, 12)
    assert EmbeddingSearch.open(out, model).query(out / "k/00001/401.jpg", 1)[0][0] == 401


def test_a_corrupt_or_missing_file_is_recorded_not_fatal(
    out: Path, model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_photos(out, {500: b"\xff\xd8 not really a jpeg", 501: None})
    with caplog.at_level(logging.WARNING, logger="harvester.embedding"):
        report = run_index(out, model, batch=4)
    assert (report.embedded, report.skipped, report.count) == (10, 2, 10)
    assert report.reasons == {"UnidentifiedImageError": 1, "FileNotFoundError": 1}
    assert "photo 500" in caplog.text
    assert "photo 501" in caplog.text
    index = VectorIndex.open(out, model_sha256(model))
    assert index is not None
    assert set(index.skipped) == {500, 501}
    again = run_index(out, model)  # recorded once: not tried again
    assert (again.already, again.embedded, again.skipped) == (12, 0, 0)


def test_another_model_gets_an_index_of_its_own(out: Path, model: Path, tmp_path: Path) -> None:
    other = conv_model(tmp_path / "other.onnx", seed=7, channels=16)
    run_index(out, model)
    report = run_index(out, other)
    assert report.already == 0
    assert report.count == 10
    assert sorted(p.name for p in (out / "harvest.vectors").iterdir()) == sorted(
        model_sha256(m)[:16] for m in (model, other)
    )
    first, second = (VectorIndex.open(out, model_sha256(m)) for m in (model, other))
    assert first is not None
    assert second is not None
    assert (first.spec.dim, second.spec.dim) == (32, 16)


def test_the_same_model_with_another_normalisation_is_refused(out: Path, model: Path) -> None:
    run_index(out, model)
    with pytest.raises(ConfigError, match="another preprocessing"):
        run_index(out, model, options=EmbedOptions(preset=Preset.CLIP))


def test_a_query_is_prepared_as_its_index_was(out: Path, tmp_path: Path) -> None:
    dynamic = conv_model(tmp_path / "dynamic.onnx", size="dynamic")
    run_index(out, dynamic, options=EmbedOptions(size_px=48, preset=Preset.CLIP))
    search = EmbeddingSearch.open(out, dynamic)  # no options: the index's are used
    assert (search.embedder.preprocessing.width, search.embedder.preprocessing.source) == (
        48,
        "clip",
    )
    ((top, score),) = search.query(out / "k/00001/103.jpg", 1)
    assert top == 103
    assert score == pytest.approx(1.0, abs=1e-4)


def test_no_index_yet_says_how_to_make_one(out: Path, model: Path) -> None:
    with pytest.raises(ConfigError, match="run `harvest index"):
        embed_query(out, model, out / "k/00001/100.jpg")
    assert VectorIndex.open(out, model_sha256(model)) is None


def test_an_unreadable_query_is_an_image_error(out: Path, model: Path) -> None:
    run_index(out, model)
    with pytest.raises(ImageError, match="cannot be read"):
        EmbeddingSearch.open(out, model).query(b"not an image")


# --- the index files -----------------------------------------------------------------------------


def spec(dim: int = 8) -> IndexSpec:
    return IndexSpec(
        model_sha256="ab" * 32, model_name="m.onnx", dim=dim, output="y", preprocessing={"p": 1}
    )


def unit_rows(n: int, dim: int, seed: int) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    unit: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def test_search_is_the_exact_top_k_across_chunks_and_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "SLICE_BYTES", 8 * 4 * 7)  # 7 rows a slice: many slices
    rows = unit_rows(100, 8, seed=1)
    rows[57] = rows[12]  # a tie: broken by photo id
    with IndexWriter.open(tmp_path, spec()) as writer:
        for start in range(0, 100, 30):
            ids = np.arange(start, min(start + 30, 100), dtype=np.int64) + 1000
            writer.append(ids, rows[start : start + 30], {})
    index = VectorIndex.open(tmp_path, spec().model_sha256)
    assert index is not None
    assert index.count == 100
    query = rows[12] + 0.01 * unit_rows(1, 8, seed=2)[0]
    hits = index.search(query * 3.0, k=10)  # any length: the query is normalised
    scores = rows @ (query / np.linalg.norm(query))
    expected = sorted(range(100), key=lambda i: (-scores[i], i))[:10]
    assert [pid for pid, _ in hits] == [1000 + i for i in expected]
    assert hits[:2] == [(1012, pytest.approx(scores[12], abs=1e-6)), (1057, hits[0][1])]
    assert len(index.search(query, k=500)) == 100
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(5), k=1)


def test_small_chunks_merge_and_a_killed_merge_leaves_no_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "MERGE_AT", 4)
    rows = unit_rows(12, 8, seed=3)
    with IndexWriter.open(tmp_path, spec()) as writer:
        for i in range(3):
            writer.append(np.arange(i * 2, i * 2 + 2, dtype=np.int64), rows[i * 2 : i * 2 + 2], {})
    chunks = tmp_path / vectors.VECTORS_DIR / spec().model_sha256[:16] / "chunks"
    parts = tmp_path / "parts"
    shutil.copytree(chunks, parts)  # the three one-batch chunks, as a killed merge leaves them
    with IndexWriter.open(tmp_path, spec()) as writer:
        writer.append(np.array([6], dtype=np.int64), rows[6:7], {7: "x"})  # the 4th: merged
    assert sorted(p.name for p in chunks.iterdir()) == ["00000001-00000004"]
    for part in parts.iterdir():
        shutil.copytree(part, chunks / part.name)
    (chunks / ".tmp-00000005-00000005-1").mkdir()  # a batch killed while being written
    index = VectorIndex.open(tmp_path, spec().model_sha256)
    assert index is not None
    assert sorted(index.ids.tolist()) == [0, 1, 2, 3, 4, 5, 6]
    assert index.skipped == {7: "x"}
    with IndexWriter.open(tmp_path, spec()) as writer:  # the next writer cleans up
        assert writer.done == set(range(8))
        assert writer.count == 7
    assert sorted(p.name for p in chunks.iterdir()) == ["00000001-00000004"]


def test_one_writer_at_a_time_and_a_spec_never_changes(tmp_path: Path) -> None:
    with (
        IndexWriter.open(tmp_path, spec()),
        pytest.raises(ConfigError, match="another `harvest index` is writing"),
    ):
        IndexWriter.open(tmp_path, spec())
    with pytest.raises(ConfigError, match="another dim"):
        IndexWriter.open(tmp_path, spec(dim=16))
    with IndexWriter.open(tmp_path, spec()) as writer:
        assert writer.count == 0
    manifest = (index_dir(tmp_path, spec().model_sha256) / "manifest.json").read_text()
    assert '"dtype": "float32"' in manifest
    assert '"dim": 8' in manifest


# --- the command on an emulator harvest --------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    with threaded_emulator(photos=600, seed=3, profile="ideal") as running:
        yield running


def test_harvest_index_on_an_emulator_harvest(
    emu: ThreadedEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = harvest_keywords(emu, tmp_path, ("sky", "london"))
    model = conv_model(tmp_path / "model.onnx")
    assert harvest("index", out, "--embedder", model, "--batch", "8", "--plain") == 0
    printed = capsys.readouterr().out
    stored = store_rows(out, "SELECT id, path FROM photos WHERE status = 'done' ORDER BY id")
    assert len(stored) >= 10
    assert f"stored photos {len(stored):,}" in printed
    search = EmbeddingSearch.open(out, model)
    assert search.indexed == len(stored)
    for pid, path in stored[:: max(1, len(stored) // 8)]:
        hits = search.query((out / path).read_bytes(), k=5)
        top_id, top_score = hits[0]
        assert top_score == pytest.approx(1.0, abs=1e-4)
        # rank 1 is the photo, unless the harvest holds a copy with the very same vector
        assert top_id == pid or hits[1][1] == pytest.approx(top_score, abs=1e-5), hits
        assert pid in {h[0] for h in hits if h[1] == pytest.approx(top_score, abs=1e-5)}
    assert harvest("index", out, "--embedder", model, "--plain") == 0
    assert "embedded now 0 " in capsys.readouterr().out
