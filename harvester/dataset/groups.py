"""Duplicate groups from classified pairs: components for identical copies, stars for near ones.

Identical copies (same bytes, same pixels) are the same file content, so they join by connected
components (union-find). Near copies form a star around one representative, the best copy
(most pixels, then earliest upload): chains A~B~C of near pairs must not merge into one giant
component, as clip-retrieval and SNIP found at scale. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harvester.dataset.classify import IDENTICAL_KINDS, Kind, PairVerdict


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """One photo's place in a duplicate group."""

    photo_id: int
    group: int  # the representative's photo id
    kind: Kind | None  # how this photo relates to the representative; None for it
    param: str = ""


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while (up := self.parent.get(root, root)) != root:
            root = up
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def build_groups(
    pairs: Iterable[PairVerdict], rank: Mapping[int, tuple[float, int, int]]
) -> list[Membership]:
    """Every photo in a group with its representative; photos in no pair are left out.

    `rank` orders photos best first (classify.Signal.rank) and must cover every pair's ends.
    Groups come out best representative first, each with its representative first.
    """
    pairs = list(pairs)
    units = _identical_units(pairs, rank)
    unit_of = {photo: head for head, members in units.items() for photo in members}
    near = _near_edges(pairs, unit_of)
    direct = {(p.a, p.b): p for p in pairs} | {(p.b, p.a): p for p in pairs}
    same: dict[int, Kind] = {}  # unit head → identical bytes, unless an edge is only pixels
    for p in pairs:
        if p.kind in IDENTICAL_KINDS and same.get(unit_of[p.a]) is not Kind.IDENTICAL_PIXELS:
            same[unit_of[p.a]] = p.kind
    members: list[Membership] = []
    taken: set[int] = set()
    for head in sorted(units, key=lambda h: rank[h]):
        if head in taken:
            continue
        around = sorted((u for u in near.get(head, {}) if u not in taken), key=lambda h: rank[h])
        star = [head, *around]
        taken.update(star)
        if len(star) > 1 or len(units[head]) > 1:
            members.extend(_star_members(star, units, near, direct, same))
    return members


def _identical_units(
    pairs: list[PairVerdict], rank: Mapping[int, tuple[float, int, int]]
) -> dict[int, list[int]]:
    """Head (best member) → members, over identical edges; every photo of a pair is a unit."""
    uf = _UnionFind()
    for p in pairs:
        uf.find(p.a)
        uf.find(p.b)
        if p.kind in IDENTICAL_KINDS:
            uf.union(p.a, p.b)
    comps: dict[int, list[int]] = {}
    for photo in {x for p in pairs for x in (p.a, p.b)}:
        comps.setdefault(uf.find(photo), []).append(photo)
    units = [sorted(m, key=lambda x: rank[x]) for m in comps.values()]
    return {unit[0]: unit for unit in units}


def _near_edges(
    pairs: list[PairVerdict], unit_of: Mapping[int, int]
) -> dict[int, dict[int, PairVerdict]]:
    """Unit head → neighbouring unit head → the closest near pair between the two units."""
    near: dict[int, dict[int, PairVerdict]] = {}
    for p in pairs:
        ua, ub = unit_of[p.a], unit_of[p.b]
        if p.kind in IDENTICAL_KINDS or ua == ub:
            continue
        for x, y in ((ua, ub), (ub, ua)):
            old = near.setdefault(x, {}).get(y)
            if old is None or p.distance < old.distance:
                near[x][y] = p
    return near


def _star_members(
    star: list[int],
    units: Mapping[int, list[int]],
    near: Mapping[int, Mapping[int, PairVerdict]],
    direct: Mapping[tuple[int, int], PairVerdict],
    same: Mapping[int, Kind],
) -> list[Membership]:
    """The representative, its identical copies, then each near unit with the unit's link."""
    head = star[0]
    out = [Membership(photo_id=head, group=head, kind=None)]
    for unit in star:
        link = near[head][unit] if unit != head else None
        for photo in units[unit]:
            if photo == head:
                continue
            pair = direct.get((head, photo)) or link
            kind, param = (pair.kind, pair.param) if pair else (same[unit], "")
            out.append(Membership(photo_id=photo, group=head, kind=kind, param=param))
    return out
