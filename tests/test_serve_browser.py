"""`harvest serve` in headless Chromium: the real command in a child process on a free loopback
port, over an emulator harvest on which `harvest dupes` ran. Every page loads with no console
error and nothing fetched from elsewhere; a filter narrows the grid; the duplicates toggle
flips; a rotated copy of a harvested photo, uploaded through the form, is found at rank 1;
a photo page shows its licence. Screenshots go under the test's tmp_path.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pytest
from PIL import Image

from harvester.licenses import license_for
from tests.harness import (
    ServedHarvest,
    chromium,
    needs_chromium,
    serving,
    store_rows,
)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def harvested(served_harvest: ServedHarvest) -> Path:
    """A finished harvest of a 10,000-photo emulator, dupes run (shared: read only here)."""
    return served_harvest.out


@pytest.fixture(scope="module")
def base_url(harvested: Path) -> Iterator[str]:
    """`harvest serve` running on the harvest."""
    with serving(harvested) as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with chromium() as d:
        yield d


def _logs(driver: Any, kind: str) -> list[dict[str, Any]]:
    # selenium leaves get_log unannotated: what ChromeDriver returns, one dict per entry
    return cast(Callable[[str], list[dict[str, Any]]], driver.get_log)(kind)


def _requests(driver: Any) -> list[str]:
    return [
        orjson.loads(e["message"])["message"]["params"]["request"]["url"]
        for e in _logs(driver, "performance")
        if '"Network.requestWillBeSent"' in e["message"]
    ]


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"


#: Loads every image of the page (lazy ones too) and answers the sources of those that failed.
_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.querySelectorAll("main img:not([hidden])"));
for (const i of images) i.loading = "eager";
Promise.all(images.map((i) => i.decode().then(() => null, () => i.src))).then(
  (failed) => done(failed.filter((src) => src !== null)));
"""


def _broken_images(driver: Any) -> list[str]:
    return cast(list[str], driver.execute_async_script(_IMAGES))


def _done(out: Path) -> list[int]:
    rows = store_rows(out, "SELECT id FROM photos WHERE status = 'done' ORDER BY id")
    return [int(r[0]) for r in rows]


def test_every_page_loads_with_no_console_error_and_nothing_from_elsewhere(
    driver: Any, base_url: str, harvested: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    copy = store_rows(harvested, "SELECT photo_id FROM dup_group WHERE kind IS NOT NULL")[0][0]
    _logs(driver, "browser")
    _requests(driver)  # clear what earlier tests left
    for name, path in [
        ("overview", ""),
        ("browse", "browse"),
        ("photo", f"photo/{copy}"),
        ("duplicates", "duplicates"),
        ("search", "search"),
        ("attention", "attention"),
    ]:
        _open(driver, base_url + path)
        assert driver.find_element(By.TAG_NAME, "h1").text
        assert _broken_images(driver) == [], name
        driver.save_screenshot(str(tmp_path / f"{name}.png"))
    _open(driver, base_url)
    driver.execute_script("return new Promise(r => setTimeout(r, 3500))")  # one status poll
    console = [e for e in _logs(driver, "browser") if e["level"] in ("SEVERE", "WARNING")]
    assert console == []
    requests = _requests(driver)
    assert f"{base_url}api/status" in requests  # the overview's script polled the counts
    assert [r for r in requests if not r.startswith(base_url)] == []
    assert all((tmp_path / f"{n}.png").stat().st_size > 5_000 for n in ("overview", "browse"))


def test_a_filter_narrows_the_grid(driver: Any, base_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    _open(driver, base_url + "browse")
    tiles = driver.find_elements(By.CSS_SELECTOR, "#grid .tile")
    before = {t.get_attribute("data-id"): t.get_attribute("data-license") for t in tiles}
    assert len(set(before.values())) > 1
    Select(driver.find_element(By.NAME, "license")).select_by_value("4")  # submits on change
    WebDriverWait(driver, 20).until(lambda d: "license=4" in d.current_url)
    tiles = driver.find_elements(By.CSS_SELECTOR, "#grid .tile")
    after = {t.get_attribute("data-id"): t.get_attribute("data-license") for t in tiles}
    assert after
    assert set(after.values()) == {"4"}
    assert set(after) != set(before)
    driver.save_screenshot(str(tmp_path / "filtered.png"))


def test_the_duplicates_toggle_flips_to_the_copy(driver: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, base_url + "duplicates")
    group = driver.find_element(By.CSS_SELECTOR, ".group")
    figure = group.find_element(By.CSS_SELECTOR, ".flip")
    image = figure.find_element(By.TAG_NAME, "img")
    rep, copy = figure.get_attribute("data-a"), figure.get_attribute("data-b")
    assert image.get_attribute("src").endswith(f"/thumb/{rep}")
    group.find_element(By.CSS_SELECTOR, ".toggle").click()
    assert image.get_attribute("src").endswith(f"/thumb/{copy}")
    group.find_element(By.CSS_SELECTOR, ".toggle").click()
    assert image.get_attribute("src").endswith(f"/thumb/{rep}")


def test_a_rotated_copy_uploaded_is_found_at_rank_1(
    driver: Any, base_url: str, harvested: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    target = _done(harvested)[11]
    (path,) = store_rows(harvested, f"SELECT path FROM photos WHERE id = {target}")[0]
    turned = np.rot90(np.asarray(Image.open(harvested / path).convert("RGB"))).copy()
    query = tmp_path / "turned.jpg"
    sink = io.BytesIO()
    Image.fromarray(turned).save(sink, "JPEG", quality=88)
    query.write_bytes(sink.getvalue())
    _open(driver, base_url + "search")
    driver.find_element(By.CSS_SELECTOR, "#search input[type=file]").send_keys(str(query))
    driver.find_element(By.CSS_SELECTOR, "#search button").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits li"))
    first = driver.find_element(By.CSS_SELECTOR, "#hits li:first-child")
    assert first.get_attribute("data-rank") == "1"
    assert first.get_attribute("data-photo") == str(target)
    assert "same picture" in first.text
    driver.save_screenshot(str(tmp_path / "search.png"))


def test_a_photo_page_shows_its_licence(
    driver: Any, base_url: str, harvested: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    target = _done(harvested)[3]
    sql = f"SELECT record ->> '$.license', width FROM photos WHERE id = {target}"
    ((lic, width),) = store_rows(harvested, sql)
    _open(driver, f"{base_url}photo/{target}")
    assert driver.find_element(By.ID, "photo-license").text == license_for(int(lic)).name
    assert license_for(int(lic)).name in driver.find_element(By.ID, "credit").text
    shown = driver.execute_script("return document.getElementById('photo-image').naturalWidth")
    assert shown == width  # the stored file itself
    driver.save_screenshot(str(tmp_path / "photo.png"))


def test_the_overview_follows_a_store_being_written(
    driver: Any, harvested: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    out = tmp_path / "out"
    shutil.copytree(harvested, out)
    moved = _done(out)[:3]
    with serving(out) as url:
        _open(driver, url)
        failed = driver.find_element(By.CSS_SELECTOR, "[data-count=failed]")
        before = int(failed.text.replace(",", ""))
        db = sqlite3.connect(out / "harvest.sqlite")  # a writer, as a running harvest is
        marks = ",".join("?" * len(moved))
        db.execute(
            f"UPDATE photos SET status = 'failed', reason = 'x' WHERE id IN ({marks})", moved
        )
        db.commit()
        db.close()
        WebDriverWait(driver, 30).until(lambda _: failed.text == f"{before + len(moved):,}")
        rows = driver.find_elements(By.CSS_SELECTOR, "#keywords tbody tr")
        cell = "[data-col=failed]"
        shown = {
            tr.get_attribute("data-keyword"): tr.find_element(By.CSS_SELECTOR, cell).text
            for tr in rows
        }
    sql = "SELECT keyword, COUNT(*) FROM photos WHERE status = 'failed' GROUP BY keyword"
    failed_now = {k: f"{n:,}" for k, n in store_rows(out, sql)}
    assert shown == {k: failed_now.get(k, "0") for k in shown}  # each keyword's cell updated too
