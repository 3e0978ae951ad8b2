"""The README's screenshots of `harvest serve`: docs/serve-{overview,browse,photo,...}.png.

    python -m tests.serve_screenshots [--docs docs]

Harvests a 10,000-photo emulator (the browser test's harvest), runs `harvest dupes`, serves it
with the real command and photographs each page in headless Chromium (Debian's chromium and
chromedriver). Each PNG is quantised to 256 colours so that it stays under about 300 KB.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.harness import chromium, harvest_to_serve, serving, store_rows, threaded_emulator

KEYWORDS = ("nature", "london", "sky")
WIDTH, HEIGHT = 1200, 820


def _shoot(driver: Any, target: Path) -> int:
    """Save the window as a 256-colour PNG; its size in bytes."""
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target.stat().st_size


def _query(out: Path, directory: Path) -> Path:
    """A rotated copy of a harvested photo that has duplicates, to search with."""
    (path,) = store_rows(
        out,
        "SELECT p.path FROM dup_group g JOIN photos p ON p.id = g.group_id"
        " WHERE g.kind IS NOT NULL ORDER BY g.group_id LIMIT 1",
    )[0]
    turned = np.rot90(np.asarray(Image.open(out / path).convert("RGB"))).copy()
    query = directory / "query.jpg"
    Image.fromarray(turned).save(query, quality=88)
    return query


def shoot_all(out: Path, docs: Path, scratch: Path) -> dict[str, int]:
    """Serve `out` and photograph every page into `docs`; {file name: bytes}."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    copy = store_rows(out, "SELECT photo_id FROM dup_group WHERE kind IS NOT NULL LIMIT 1")[0][0]
    sizes = {}
    with serving(out) as url, chromium(WIDTH, HEIGHT) as driver:
        for name, path in [
            ("overview", ""),
            ("browse", "browse"),
            ("photo", f"photo/{copy}"),
            ("duplicates", "duplicates"),
        ]:
            driver.get(url + path)
            driver.execute_script("return new Promise(r => setTimeout(r, 800))")  # thumbnails
            sizes[f"serve-{name}.png"] = _shoot(driver, docs / f"serve-{name}.png")
        driver.get(url + "search")
        driver.find_element(By.CSS_SELECTOR, "#search input[type=file]").send_keys(
            str(_query(out, scratch))
        )
        driver.find_element(By.CSS_SELECTOR, "#search button").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits li"))
        driver.execute_script("return new Promise(r => setTimeout(r, 800))")
        sizes["serve-search.png"] = _shoot(driver, docs / "serve-search.png")
    return sizes


def main() -> None:
    """Harvest, serve, shoot; print each file's size."""
    parser = argparse.ArgumentParser(prog="python -m tests.serve_screenshots")
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-shots-") as tmp:
        base = Path(tmp)
        with threaded_emulator(photos=10_000, seed=0, profile="ideal") as emu:
            out = harvest_to_serve(emu, base, KEYWORDS)
        for name, size in shoot_all(out, args.docs, base).items():
            print(f"{args.docs / name}: {size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
