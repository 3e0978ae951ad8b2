"""`harvest report OUT` against a real harvest of the emulator: the numbers are `harvest status`'s,
every photo that needs a person is listed (page and CSV), hostile text stays text, bad input
changes nothing, and the page loads in headless Chromium with nothing leaving the file.

The harvest is made in two runs: the search half alone (`--metadata-only`), then, after a few
claimed records are made unusable in the store (a wrong secret: 404 from the image host; an
owner that is not an NSID, with a script for a title: an unsafe record; no image URL at all: an
error skip), the download half. So the failures, the restart and the hostile text all go
through the real engine.
"""

from __future__ import annotations

import csv
import html.parser
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from harvester.exit_codes import EXIT_USAGE
from harvester.store.sqlite import Store
from tests.harness import (
    ThreadedEmulator,
    harvest,
    only_line,
    run_args,
    store_rows,
    threaded_emulator,
    write_queries,
)

HOSTILE_KEYWORD = "<img src=x onerror=alert(1)> $x_$"  # and mathtext that does not parse
KEYWORDS = ("sunset", "tokyo", "nature", HOSTILE_KEYWORD)
HOSTILE_TITLE = "</td><script>alert('title')</script>"
HOSTILE_OWNER = 'evil"><script>alert(2)</script>'
SCRIPT = re.compile(r"<script\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    """An ideal 3,000-photo emulator."""
    with threaded_emulator(photos=3000, seed=0, profile="ideal") as running:
        yield running


def _spoil(out: Path) -> dict[str, int]:
    """Make three claimed records unusable in the store; returns {kind: photo id}."""
    db = sqlite3.connect(out / "harvest.sqlite")
    large = "SELECT 1 FROM json_each(record, '$.sizes') WHERE value ->> '$.label' = 'l'"
    sql = f"SELECT id FROM photos WHERE EXISTS ({large}) ORDER BY id LIMIT 3 OFFSET 5"
    ids = [r[0] for r in db.execute(sql)]  # photos that would be stored (they have a Large)
    spoilt = dict(zip(("not found", "unsafe", "no url"), ids, strict=True))
    for kind, pid in spoilt.items():
        (text,) = db.execute("SELECT record FROM photos WHERE id = ?", (pid,)).fetchone()
        rec = orjson.loads(text)
        if kind == "not found":
            for size in rec["sizes"]:  # .../{id}_{secret}[_{suffix}].jpg: any secret, zeros
                size["url"] = re.sub(r"/(\d+)_[0-9a-f]+", r"/\1_0000000000", size["url"])
            rec["original_secret"] = "0" * 10
        elif kind == "unsafe":
            rec["owner"], rec["title"] = HOSTILE_OWNER, HOSTILE_TITLE
        else:
            rec["sizes"], rec["original_secret"] = [], None
        db.execute("UPDATE photos SET record = ? WHERE id = ?", (orjson.dumps(rec).decode(), pid))
    db.commit()
    db.close()
    return spoilt


@pytest.fixture(scope="module")
def harvested(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-run harvest of KEYWORDS with three spoilt photos (copy it to change it)."""
    base = tmp_path_factory.mktemp("report")
    queries = write_queries(base / "queries.txt", (*KEYWORDS, "-paris"))
    out = base / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        assert harvest(*run_args(emu, queries, out, "--metadata-only")) == 0
        _spoil(out)
        assert harvest(*run_args(emu, queries, out)) == 0
    return out


@pytest.fixture
def out(harvested: Path, tmp_path: Path) -> Path:
    """This test's own copy of the harvest."""
    copy = tmp_path / "out"
    shutil.copytree(harvested, copy)
    return copy


@pytest.fixture(scope="module")
def reported(harvested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harvest, copied once, with its report made by `harvest report`."""
    copy = tmp_path_factory.mktemp("reported") / "out"
    shutil.copytree(harvested, copy)
    assert harvest("report", copy) == 0
    return copy


class _Cells(html.parser.HTMLParser):
    """Rows of the page's tables by id: [(row attrs, [cell text, ...]), ...]; every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, str | None], list[str]]]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append((dict(attrs), []))
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1][1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _page(out: Path) -> _Cells:
    parser = _Cells()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    return parser


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_numbers_equal_harvest_status(reported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert harvest("status", reported) == 0
    lines = capsys.readouterr().out.splitlines()
    status = {}
    for line in lines[1:]:
        if line.startswith("  "):
            continue
        *name, windows, found, new, dup, pending, done, skipped, failed = line.split()
        status[" ".join(name)[:24]] = [windows, found, new, dup, pending, done, skipped, failed]
    page = _page(reported)
    cols = ("windows", "found", "new", "duplicates", "pending", "stored", "skipped", "failed")
    shown = {}
    for attrs, cells in page.tables["keyword-table"][1:]:
        head = ("keyword", "windows", "found", "new", "duplicates", "negatives", "stored")
        row = dict(zip((*head, "skipped", "failed", "pending"), cells, strict=True))
        shown[str(attrs["data-keyword"])[:24]] = [str(_number(row[c])) for c in cols]
    assert shown == status
    assert len(shown) == len(KEYWORDS) + 1  # and TOTAL
    reasons = {
        line.strip().rsplit(": ", 1)[0]: int(line.rsplit(": ", 1)[1])
        for line in lines
        if line.startswith("  ")
    }
    table = {cells[0]: _number(cells[1]) for _, cells in page.tables["reason-table"][1:]}
    assert table == reasons
    assert reasons["failed: download"] == 1
    assert reasons["failed: unsafe record"] == 1


def test_search_calls_are_the_emulators_count_and_above_the_bound(
    reported: Path, emu: ThreadedEmulator
) -> None:
    page = _page(reported)
    rows = {cells[0]: cells[1:] for _, cells in page.tables["api-table"][1:]}
    calls = sum(_number(c[1]) for c in rows.values())
    assert calls == emu.searches(), "every search call of both runs is in the store's tally"
    for returned, spent, bound in rows.values():
        assert _number(bound) == -(-_number(returned) // 500)
        assert _number(spent) >= _number(bound)
    negatives = [_number(c[5]) for _, c in page.tables["keyword-table"][1:-1]]
    assert sum(negatives) > 0, "-paris dropped some photos, and the page says how many"


def test_needs_a_human_lists_every_failure_and_error_skip(reported: Path) -> None:
    expected = store_rows(
        reported,
        "SELECT id, status, reason FROM photos WHERE status = 'failed'"
        " OR (status = 'skipped' AND reason LIKE 'no size: the search%') ORDER BY id",
    )
    assert len(expected) == 3
    with (reported / "needs-attention.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((int(r["photo_id"]), r["status"], r["reason"]) for r in rows) == expected
    by_id = {int(r["photo_id"]): r for r in rows}
    owners = dict(store_rows(reported, "SELECT id, json_extract(record, '$.owner') FROM photos"))
    for pid, row in by_id.items():
        if owners[pid] != HOSTILE_OWNER:
            assert row["page"] == f"https://www.flickr.com/photos/{owners[pid]}/{pid}/"
    actions = {r["reason"].split(":")[0]: r["action"] for r in rows}
    assert actions["download"].startswith("drop: gone")
    assert actions["unsafe record"].startswith("inspect")
    page = _page(reported)
    links = {t[1].get("href") for t in page.tags if t[0] == "a"}
    assert {r["page"] for r in rows} <= links
    assert all(str(h).startswith("https://www.flickr.com/photos/") for h in links)


def test_hostile_store_text_stays_text(reported: Path) -> None:
    text = (reported / "report.html").read_text(encoding="utf-8")
    page = _page(reported)
    assert len(SCRIPT.findall(text)) == 1, "only the page's own table-sorting script"
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    assert not [t for t in page.tags if t[0] == "img"], "the keyword's <img> is not a tag"
    cells = [c for rows in page.tables.values() for _, cs in rows for c in cs]
    assert HOSTILE_TITLE in cells
    assert HOSTILE_KEYWORD in cells
    owners = dict(store_rows(reported, "SELECT id, json_extract(record, '$.owner') FROM photos"))
    [pid] = [pid for pid, owner in owners.items() if owner == HOSTILE_OWNER]
    quoted = "evil%22%3E%3Cscript%3Ealert%282%29%3C%2Fscript%3E"
    links = [str(a.get("href")) for t, a in page.tags if t == "a"]
    assert f"https://www.flickr.com/photos/{quoted}/{pid}/" in links


def test_report_is_self_contained(reported: Path) -> None:
    text = (reported / "report.html").read_text(encoding="utf-8")
    page = _page(reported)
    sources = [
        (tag, value)
        for tag, attrs in page.tags
        for name, value in attrs.items()
        if name in ("src", "href", "xlink:href", "data") and tag != "a"
    ]
    assert all(str(v).startswith(("data:", "#")) for _, v in sources), sources  # "#": in-page
    assert "@import" not in text
    assert "url(http" not in text
    assert len(page.tables["runs-table"]) == 1 + 2, "both runs are listed"
    assert [t for t, _ in page.tags].count("svg") >= 4  # timeline, keywords, reasons, map...


BAD_TARGETS = {
    "unrelated html": ("report.html", b"<html>my own notes</html>"),
    "unrelated csv": ("needs-attention.csv", b"a,b\n1,2\n"),
}


@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_existing_target_is_refused_unless_force(
    case: str, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, content = BAD_TARGETS[case]
    (out / name).write_bytes(content)
    before = sorted(p.name for p in out.iterdir())
    assert harvest("report", out) == EXIT_USAGE
    assert "pass --force" in only_line(capsys.readouterr().err)
    assert (out / name).read_bytes() == content
    assert sorted(p.name for p in out.iterdir()) == before, "nothing else was written"
    assert harvest("report", out, "--force") == 0
    assert (out / name).read_bytes() != content


def test_rerun_replaces_its_own_report_and_html_elsewhere(out: Path, tmp_path: Path) -> None:
    assert harvest("report", out) == 0
    first = (out / "report.html").stat().st_mtime_ns
    assert harvest("report", out) == 0, "its own files are replaced without --force"
    assert (out / "report.html").stat().st_mtime_ns >= first
    elsewhere = tmp_path / "page.html"
    assert harvest("report", out, "--html", elsewhere) == 0
    assert "harvest report" in elsewhere.read_text(encoding="utf-8")
    assert not list(out.glob(".*.tmp-*")), "no temporary file is left"


def test_no_store_or_empty_harvest_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert harvest("report", empty) == EXIT_USAGE
    assert "holds no harvest" in only_line(capsys.readouterr().err)
    assert list(empty.iterdir()) == []
    Store.in_dir(empty).close()  # a store with nothing in it
    store = (empty / "harvest.sqlite").read_bytes()
    assert harvest("report", empty) == EXIT_USAGE
    assert "empty harvest" in only_line(capsys.readouterr().err)
    # (SQLite's -wal/-shm appear for any reader of a WAL store, `harvest status` too)
    assert {p.name for p in empty.iterdir()} - {"harvest.sqlite-wal", "harvest.sqlite-shm"} == {
        "harvest.sqlite"
    }
    assert (empty / "harvest.sqlite").read_bytes() == store


# --- in a real browser -----------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver on PATH"
    " (apt-get install chromium chromium-driver; .ci/run installs them)",
)


@needs_chromium
def test_page_loads_offline_in_headless_chromium(reported: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,2400",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        url = (reported / "report.html").resolve().as_uri()
        driver.get(url)
        assert driver.execute_script("return document.readyState") == "complete"
        assert len(driver.find_elements(By.CSS_SELECTOR, ".figure svg")) >= 4
        heading = driver.find_element(By.CSS_SELECTOR, "#keyword-table thead th:nth-child(3)")
        heading.click()  # sort by found, largest first: the page's script runs
        first = driver.find_element(By.CSS_SELECTOR, "#keyword-table tbody tr:first-child")
        assert first.get_attribute("data-keyword") == "nature"
        driver.save_screenshot(str(tmp_path / "report.png"))
        # selenium leaves get_log unannotated: what ChromeDriver returns, one dict per entry
        get_log = cast(Callable[[str], list[dict[str, Any]]], driver.get_log)
        requests = [
            orjson.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in get_log("performance")
            if '"Network.requestWillBeSent"' in entry["message"]
        ]
        console = [e for e in get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    finally:
        driver.quit()
    assert url in requests
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    assert console == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
