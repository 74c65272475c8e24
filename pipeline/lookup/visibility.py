"""Which ranked candidates a lookup page may show, beyond "its record is current": never a
tombstoned (deleted) image, and with `dedupe` one image per near-duplicate group.

A group is named by its root: the image a member is `near_duplicate_of` (or, for an exact copy
not compared yet, `duplicate_of`); a root names its own group. The root represents its group
while it is a current candidate of the query, so a member shows only when its root does not
(deleted, or of another prompt), then the best-ranked such member of a page; the groups a page
showed that way travel in the next page's cursor (`carried`), so no later page shows another
of their members. Copies of the query image itself are left out too. The rule needs no reads
beyond the page's roots, so pages stay cheap and a group's root is the same image on every page.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

from pipeline.lookup.cursor import group_token

GROUP_ATTRIBUTES = ["duplicate_of", "near_duplicate_of"]


def group_of(image_id: str, record: Mapping[str, Any] | None) -> str:
    """The root naming the image's near-duplicate group. Pure."""
    if not record:
        return image_id
    return str(record.get("near_duplicate_of") or record.get("duplicate_of") or image_id)


class Visibility:
    def __init__(
        self,
        tombstones: frozenset[str],
        candidate_ids: Container[str],  # the ranking source's rows (`in` asks it)
        dedupe: bool = False,
        query_group: str | None = None,
        current: Callable[[list[str]], set[str]] | None = None,
        carried: tuple[str, ...] = (),
    ) -> None:
        self.tombstones = tombstones
        self.candidate_ids = candidate_ids
        self.dedupe = dedupe
        self.query_group = query_group
        self.current = current  # ids -> those whose record is current for the query
        self.carried = carried  # group_token()s of groups earlier pages showed via a member
        self._carried = frozenset(carried)  # a forged cursor may carry hundreds
        self.seen: set[str] = set()
        self.through_members: dict[str, str] = {}  # member id -> its group's token

    def groups_for_next_page(self, page_ids: list[str]) -> list[str]:
        """What the next page's cursor carries: earlier pages' groups, then those the page
        (the rows it returns, not the look-ahead row) showed through a member."""
        shown = [self.through_members[i] for i in page_ids if i in self.through_members]
        return [*self.carried, *shown]

    def keep(self, ids: list[str], records: Mapping[str, Mapping[str, Any]]) -> list[bool]:
        """For each ranked id (best first) whose record is current, whether the page shows it."""
        kept = [i not in self.tombstones for i in ids]
        if not self.dedupe:
            return kept
        groups = [group_of(i, records.get(i)) for i in ids]
        present = self._present_roots({g for i, g in zip(ids, groups, strict=True) if g != i})
        for n, (image_id, group) in enumerate(zip(ids, groups, strict=True)):
            hidden = group == self.query_group or group in self.seen
            if group != image_id and (group in present or group_token(group) in self._carried):
                hidden = True
            if kept[n] and not hidden:
                self.seen.add(group)
                if group != image_id:
                    self.through_members[image_id] = group_token(group)
            kept[n] = kept[n] and not hidden
        return kept

    def _present_roots(self, roots: set[str]) -> set[str]:
        listed = [r for r in sorted(roots) if r not in self.tombstones and r in self.candidate_ids]
        if not listed or self.current is None:
            return set(listed)
        return self.current(listed)
