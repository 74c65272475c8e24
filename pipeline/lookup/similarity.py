"""GET /similarity: the top-k images of a prompt by cosine to an embedded image.

Query path dependencies are numpy, pyarrow and boto3 only (no torch, no Pillow)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from pipeline.errors import ApiError
from pipeline.lookup.candidates import CandidateCache
from pipeline.lookup.cursor import decode_cursor, encode_cursor, query_digest
from pipeline.lookup.model_vectors import EndpointVectors
from pipeline.lookup.ranking import Position
from pipeline.lookup.sources import ExactSource, IndexSource, RankingSource
from pipeline.lookup.visibility import GROUP_ATTRIBUTES, Visibility, group_of
from pipeline.prompts import InvalidPrompt, checked_prompt
from pipeline.settings import Settings
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.bucket import ObjectStore
from pipeline.storage.data_api import DataApi
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import DELETED, EMBEDDED, ImageStore, embedded_with
from pipeline.storage.manifests_table import Manifest, ManifestStore
from pipeline.storage.shards import ShardStore
from pipeline.storage.vector_index import VectorIndex

MAX_K = 100
CANDIDATE_COLUMNS = ["image_id", "embedding", "s3_key", "source_etag"]
CURRENT_ATTRIBUTES = ["status", "prompt", "etag", "embedding_model_id", "embedded_models"]
MAX_ATTEMPTS = 3  # cuts of one page when runs keep committing to the prompt meanwhile


class SimilarityService:
    def __init__(
        self,
        settings: Settings,
        images: ImageStore,
        embeddings: EmbeddingStore,
        manifests: ManifestStore,
        objects: ObjectStore,
        cache: CandidateCache,
        active: ActiveModels | None = None,
        model_vectors: EndpointVectors | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        self.settings = settings
        self.images = images
        self.embeddings = embeddings
        self.manifests = manifests
        self.objects = objects
        self.cache = cache
        self.active = active or ActiveModels(settings, manifests.client)
        self.model_vectors = model_vectors  # None: no on-demand vectors of another model
        self.index = index  # None: every prompt is ranked by the exact scan

    @classmethod
    def from_settings(cls, settings: Settings) -> SimilarityService:
        shards = ShardStore(settings)  # one client for every shard read
        embeddings = EmbeddingStore(settings)
        return cls(
            settings,
            ImageStore(settings),
            embeddings,
            ManifestStore(settings),
            ObjectStore(settings),
            CandidateCache(lambda key: shards.read(key, CANDIDATE_COLUMNS)),
            model_vectors=EndpointVectors(settings, embeddings),
            index=VectorIndex(DataApi(settings)) if settings.vector_index_enabled else None,
        )

    def lookup(
        self,
        image_id: str,
        prompt: str,
        k: int = 10,
        min_score: float | None = None,
        cursor: str | None = None,
        dedupe: bool = False,
        exact: bool = False,
    ) -> dict[str, Any]:
        """The page of the ranking that `cursor` points at (the first without one); with
        `dedupe`, one image per near-duplicate group (pipeline.lookup.visibility); with
        `exact`, by the exact scan even where the prompt has a vector index."""
        try:
            normalized = checked_prompt(prompt, self.settings.limits.max_prompt_chars)
        except InvalidPrompt as exc:
            raise ApiError(400, "invalid_prompt", f"prompt: {exc}") from None
        query = self.query_vector(image_id, self.active.get(normalized), normalized)
        # the answering model is part of the query: a cursor of a page another model
        # answered (the prompt's pointer switched between two pages) is refused
        digest = query_digest(image_id, normalized, min_score, dedupe, query["model_id"], exact)
        after = decode_cursor(cursor, digest) if cursor else None
        page = self.top_k(
            query["embedding"],
            query["model_id"],
            normalized,
            k,
            min_score,
            after.position if after else None,
            image_id,
            dedupe=dedupe,
            carried=after.groups if after else (),
            exact=exact,
        )
        last, groups = page.pop("last"), page.pop("groups")
        next_cursor = encode_cursor(last, digest, groups) if page["next_cursor"] else None
        return page | {"image_id": image_id, "next_cursor": next_cursor}

    def query_vector(
        self, image_id: str, model_id: str | None = None, prompt: str | None = None
    ) -> dict[str, Any]:
        """The stored embedding of an image; 404 unknown, 409 not embedded (yet).

        With `model_id` (the prompt's active model), the image's vector of that model, or
        one embedded now by the endpoint if it serves that model; an image without one is
        compared with the prompt's candidates of its own model while the prompt still has
        them, never with another model's."""
        record = self.images.get(image_id)
        if record is None:
            raise ApiError(404, "image_not_found", f"no image {image_id}")
        if record["status"] == DELETED:
            raise ApiError(404, "image_not_found", f"image {image_id} was deleted")
        item = None
        if model_id is not None and record["status"] == EMBEDDED:
            item = self.embeddings.get_for_model(image_id, model_id)
            if item is not None and item.get("source_etag") != record.get("etag"):
                item = None
            if item is None and self.model_vectors is not None:
                item = self.model_vectors.vector(record, model_id)
        if item is None and record["status"] == EMBEDDED:
            item = self.embeddings.get(image_id)
            if item is not None and model_id is not None and prompt is not None:
                self._own_model_answers(image_id, item["model_id"], model_id, prompt)
        if item is None or item.get("source_etag") != record.get("etag"):
            raise ApiError(
                409,
                "not_embedded",
                f"image {image_id} is {record['status']}, not "
                "embedded yet" + (f": {record['error']}" if record.get("error") else ""),
            )
        return item

    def _own_model_answers(self, image_id: str, own: str, active: str, prompt: str) -> None:
        """409 when the image's own model has no candidates for the prompt (retired)."""
        if own != active and self.manifests.get(prompt, own) is None:
            raise ApiError(
                409,
                "model_mismatch",
                f"image {image_id} has vectors of {own} only; prompt {prompt!r} is answered "
                f"by {active}: re-run the reembed DAG for it",
            )

    def top_k(
        self,
        vector: Any,
        model_id: str,
        prompt: str,
        k: int,
        min_score: float | None,
        after: Position | int | None,
        exclude: str | None,
        dedupe: bool = False,
        carried: tuple[str, ...] = (),
        exact: bool = False,
    ) -> dict[str, Any]:
        """The k best current candidates after `after` (None or 0: from the top), with
        `next_cursor` true when more follow, `last`, the position of the page's last row, and
        `groups`, what the next page's cursor carries (see Visibility), and which
        ranking answered (`ranking`: pipeline.lookup.sources; `exact` forces the scan).

        A candidate is current when its Images record is embedded, for this prompt and model,
        from the object version the row's vector came from (`source_etag`): a replaced
        object's old row is dropped and the page refilled.
        The manifest is read again after the records: if a run committed in between, the page
        is cut again from the newer version (a run lists its shard before it marks records).
        Deleted images (the manifest's tombstones) are never shown."""
        position = after if isinstance(after, tuple) else None
        query_group = group_of(exclude, self.images.get(exclude)) if dedupe and exclude else None
        for _ in range(MAX_ATTEMPTS):
            manifest = self.manifests.get(prompt, model_id)
            if manifest is None or not manifest.shards:
                raise ApiError(
                    404,
                    "prompt_not_found",
                    f"no embedded images for prompt {prompt!r} with model {model_id}",
                )
            source = self._source(manifest, exact)
            visible = Visibility(
                manifest.tombstones,
                source,
                dedupe,
                query_group,
                partial(self._current_ids, prompt=prompt, model_id=model_id, source=source),
                carried,
            )
            page, more, total = self._current(
                source, vector, model_id, prompt, k, min_score, position, exclude, visible
            )
            latest = self.manifests.get(prompt, model_id)
            if latest is not None and latest.version == manifest.version:
                break
        expiry = self.settings.presign_expiry_seconds
        return {
            "prompt": prompt,
            "model_id": model_id,
            "k": k,
            "results": [
                {
                    "image_id": i,
                    "similarity": s,
                    "url": self.objects.presign_get(s3_key, expiry),
                }
                for i, s, s3_key in page
            ],
            "candidates": total,
            "ranking": source.name,
            "next_cursor": more,
            "last": (page[-1][1], page[-1][0]) if page else None,
            "groups": visible.groups_for_next_page([i for i, _, _ in page]),
        }

    def _source(self, manifest: Manifest, exact: bool) -> RankingSource:
        """The index where the (prompt, model) has one (the exact scan of its pending shards
        beside it), else the exact scan of every shard."""
        if exact and manifest.index_table is not None:
            limit = self.settings.exact_scan_max_rows
            if manifest.live_rows > limit:
                raise ApiError(
                    400,
                    "exact_scan_too_large",
                    f"exact=true would scan {manifest.live_rows} vectors of prompt "
                    f"{manifest.prompt!r} in memory, more than IMGSIM_EXACT_SCAN_MAX_ROWS "
                    f"({limit}): leave exact out to use the prompt's vector index",
                )
        if exact or self.index is None or manifest.index_table is None:
            return ExactSource(self.cache.get(manifest))
        pending = manifest.unindexed_shards
        newer = (
            self.cache.get(replace(manifest, shards=pending), part="pending") if pending else None
        )
        return IndexSource(self.index, manifest.index_table, manifest.index_rows, newer)

    def _current(
        self,
        source: RankingSource,
        vector: Any,
        model_id: str,
        prompt: str,
        k: int,
        min_score: float | None,
        after: Position | None,
        exclude: str | None,
        visible: Visibility,
    ) -> tuple[list[tuple[str, float, str]], bool, int]:
        """Up to k current candidates after `after`, whether another one follows, and how
        many candidates passed the filters (current or not: that takes a read per row)."""
        found: list[tuple[str, float, str]] = []
        dropped, total = 0, None
        while len(found) <= k:  # k + 1: the extra one says whether a next page exists
            limit = k + 1 - len(found) + dropped
            ranked = source.rank(vector, limit, exclude, min_score, after)
            total = ranked.total if total is None else total
            if not ranked.ids:
                break
            records = self.images.batch_get(ranked.ids, CURRENT_ATTRIBUTES + GROUP_ATTRIBUTES)
            current = [
                i
                for i, etag in zip(ranked.ids, ranked.etags, strict=True)
                if _current(records.get(i), prompt, model_id, etag)
            ]
            shown = dict(zip(current, visible.keep(current, records), strict=True))
            for i, s, key in zip(ranked.ids, ranked.scores, ranked.s3_keys, strict=True):
                if shown.get(i, False):
                    found.append((i, s, key))
                else:
                    dropped += 1
            after = (ranked.scores[-1], ranked.ids[-1])
            if ranked.exhausted:
                break
        return found[:k], len(found) > k, total or 0

    def _current_ids(
        self, ids: list[str], prompt: str, model_id: str, source: RankingSource
    ) -> set[str]:
        records = self.images.batch_get(ids, CURRENT_ATTRIBUTES)
        etags = source.etags(ids)
        return {
            i for i in ids if i in etags and _current(records.get(i), prompt, model_id, etags[i])
        }


def _current(
    record: dict[str, Any] | None, prompt: str, model_id: str, row_etag: str | None
) -> bool:
    """The image's current object version is the one this row's vector came from, and it is
    embedded into this prompt with this model. A row without an ETag (a shard written
    before rows carried one) is checked by the record alone."""
    return (
        record is not None
        and record.get("status") == EMBEDDED
        and record.get("prompt") == prompt
        and embedded_with(record, model_id)
        and (row_etag is None or record.get("etag") == row_etag)
    )
