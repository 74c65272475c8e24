"""One embedding run, as three transactions the DAG calls in order:

gather    pick the images to embed (requested ones plus pending ones recorded before a cutoff),
          write the job's JSON Lines input and the run's target list to S3;
transform SageMaker batch transform (the DAG's operator; not in this module);
commit    read the job's output, write one Parquet shard per prompt, then the ShardManifests,
          the Embeddings items, and finally the Images status (pipeline.commit.writer's steps).

Each image a run plans counts one attempt on its record; a run that fails for good leaves its
images pending for a later run, up to `attempts.MAX_ATTEMPTS` runs, after which the image fails
with the reason (`give_up_after_failure`, else the next gather): the one retry path, described
in `attempts`. A run that failed before commit listed nothing; a commit that failed before its
manifest update left an orphan shard that compaction removes; one that failed for good between
the manifest and the Images status left its shard listed and its images pending, so the next
run lists their rows a second time: lookups keep one row per image (a later shard's row wins)
and compaction keeps one (tests/integration/test_embedding_run.py).

Every key and value is derived from the run id and the run's own timestamp, so a retried task
or a re-run DAG run overwrites with identical content: no duplicate rows, no extra records.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from pipeline import aws
from pipeline.commit.writer import Committed, CommitWriter
from pipeline.duplicates.near import PostCommit
from pipeline.embedding.attempts import MAX_ATTEMPTS, Step, gave_up_reason, next_step
from pipeline.embedding.superseded import SupersededRows
from pipeline.settings import Settings
from pipeline.storage.data_api import DataApi
from pipeline.storage.images_table import EMBEDDED, FAILED, PENDING
from pipeline.storage.keys import embed_run_prefix, input_part, shard_key
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow
from pipeline.storage.vector_index import VectorIndex

PART_LINES = 1000  # batch transform spreads input *files* over instances: several per run


@dataclass(frozen=True)
class Target:
    image_id: str
    s3_key: str
    etag: str
    prompt: str | None
    created_at: str

    def committed(self) -> Committed:
        return Committed(self.image_id, self.etag, self.prompt)

    def row(self, embedding: Any) -> ShardRow:
        """The target's shard row with its vector."""
        return ShardRow(
            image_id=self.image_id,
            embedding=np.asarray(embedding, "f4"),
            created_at=parse_time(self.created_at),
            s3_key=self.s3_key,
            source_etag=self.etag,
        )


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def rows_by_prompt(good: Iterable[tuple[Target, dict[str, Any]]]) -> dict[str, list[ShardRow]]:
    """The shard rows of embedded targets, by prompt in prompt order (a target without a
    prompt has no shard). Pure."""
    by_prompt: dict[str, list[ShardRow]] = defaultdict(list)
    for target, result in good:
        if target.prompt:
            by_prompt[target.prompt].append(target.row(result["embedding"]))
    return dict(sorted(by_prompt.items()))


class EmbeddingRun:
    def __init__(
        self,
        settings: Settings,
        run_id: str,
        s3: Any | None = None,
        stores: RunStores | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.prefix = embed_run_prefix(run_id)
        self._s3 = s3 or aws.client(settings, "s3")
        self.stores = stores or RunStores.from_settings(settings)
        self.images = self.stores.images
        self.embeddings = self.stores.embeddings

    @property
    def input_uri(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}input/"

    @property
    def output_uri(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}output"

    # ------------------------------------------------------------------ gather
    def gather(
        self,
        requested: list[str],
        pending_before: str,
        run_at: str,
        part_lines: int = PART_LINES,
        retry_before: str | None = None,
    ) -> dict[str, Any]:
        """Write the job input for every image still pending, counting an attempt on each;
        images attempted since `retry_before` wait, those out of attempts fail. A summary."""
        candidates: dict[str, dict[str, Any] | None] = {i: self.images.get(i) for i in requested}
        for pending in self.images.pending(pending_before):
            candidates.setdefault(pending["image_id"], pending)
        targets, repaired, waiting, gave_up = [], 0, [], []
        for image_id, record in sorted(candidates.items()):
            if record is None or record.get("status") != PENDING:
                continue
            if self._repair(record, run_at):
                repaired += 1
                continue
            step = next_step(record, self.run_id, retry_before)
            if step is Step.WAIT:
                waiting.append(image_id)
                continue
            if step is Step.GIVE_UP:
                attempts = int(record["embed_attempts"])
                reason = gave_up_reason(attempts, record["embed_attempt_run"])
                if self.images.give_up_embedding(image_id, record["etag"], reason, attempts):
                    gave_up.append(image_id)
                continue
            if not self.images.note_embed_attempt(image_id, record["etag"], self.run_id, run_at):
                continue  # replaced or deleted since it was read
            targets.append(
                Target(
                    image_id=image_id,
                    s3_key=record["s3_key"],
                    etag=record["etag"],
                    prompt=record.get("prompt"),
                    created_at=record["created_at"],
                )
            )
        parts = self.write_input(targets, run_at, part_lines)
        return {
            "count": len(targets),
            "parts": parts,
            "repaired": repaired,
            "waiting": waiting,
            "gave_up": gave_up,
            "input_uri": self.input_uri,
            "output_uri": self.output_uri,
        }

    def write_input(self, targets: list[Target], run_at: str, part_lines: int) -> int:
        """The job's JSON Lines input, `part_lines` images a part, and the run's target list
        (what commit reads back); returns how many parts."""
        bucket = self.settings.bucket
        parts = [targets[i : i + part_lines] for i in range(0, len(targets), part_lines)]
        for index, part in enumerate(parts):
            lines = "".join(
                json.dumps({"image_id": t.image_id, "s3_uri": f"s3://{bucket}/{t.s3_key}"}) + "\n"
                for t in part
            )
            self._s3.put_object(
                Bucket=bucket, Key=f"{self.prefix}input/{input_part(index)}", Body=lines.encode()
            )
        self._s3.put_object(
            Bucket=bucket,
            Key=f"{self.prefix}targets.json",
            Body=json.dumps(
                {
                    "run_id": self.run_id,
                    "run_at": run_at,
                    "part_lines": part_lines,
                    "targets": [asdict(t) for t in targets],
                }
            ).encode(),
        )
        return len(parts)

    def _repair(self, record: dict[str, Any], run_at: str) -> bool:
        """An image whose embedding was committed but whose status was not: finish it."""
        existing = self.embeddings.get(record["image_id"])
        if not existing or existing.get("source_etag") != record["etag"]:
            return False
        CommitWriter(self.stores).mark(
            Committed(record["image_id"], record["etag"], record.get("prompt")),
            {
                "status": EMBEDDED,
                "embedding_model_id": existing["model_id"],
                "embedded_at": existing["created_at"],
            },
        )
        return True

    # ---------------------------------------------------------- after a failure
    def give_up_after_failure(self, cause: str) -> list[str]:
        """After the run failed for good: fail its planned images that this run gave their
        last attempt (`cause`, the failed task and its error, goes into the reason). The others
        stay pending for a later run. Returns the ids that gave up."""
        gave_up = []
        for target in self.planned_targets() or []:
            reason = gave_up_reason(MAX_ATTEMPTS, self.run_id, cause)
            if self.images.give_up_embedding(
                target.image_id, target.etag, reason, MAX_ATTEMPTS, last_run=self.run_id
            ):
                gave_up.append(target.image_id)
        return gave_up

    def planned_targets(self) -> list[Target] | None:
        """The targets gather wrote for this run; None when it wrote none."""
        try:
            plan = json.loads(self._read(f"{self.prefix}targets.json"))
        except self._s3.exceptions.NoSuchKey:
            return None
        return [Target(**t) for t in plan["targets"]]

    # ------------------------------------------------------------------ commit
    def commit(self) -> dict[str, Any]:
        plan = json.loads(self._read(f"{self.prefix}targets.json"))
        targets = [Target(**t) for t in plan["targets"]]
        run_at = plan["run_at"]
        if not targets:
            return {
                "embedded": 0,
                "failed": 0,
                "shards": [],
                "failures": [],
                "model_id": None,
                "prompts": [],
            }
        results = self.outputs(targets, int(plan["part_lines"]))
        good = [(t, r) for t, r in zip(targets, results, strict=True) if "embedding" in r]
        bad = [(t, r) for t, r in zip(targets, results, strict=True) if "embedding" not in r]
        model_id = good[0][1]["model_id"] if good else ""
        writer = CommitWriter(self.stores)
        shards: dict[str, tuple[str, int]] = {}  # every shard written, then each listed
        for prompt, shard_rows in rows_by_prompt(good).items():
            key = shard_key(model_id, prompt, self.run_id)
            shards[prompt] = (key, writer.write_shard(key, model_id, prompt, shard_rows))
        for prompt, (key, rows) in shards.items():
            ids = frozenset(t.image_id for t, _ in good if t.prompt == prompt)
            writer.list_shard(key, model_id, prompt, rows, ids)
        for target, result in good:
            writer.put_vector(
                target.committed(),
                result["model_id"],
                np.asarray(result["embedding"], dtype=np.float32),
                shards[target.prompt][0] if target.prompt in shards else None,
                run_at,
            )
        marked = [
            writer.mark(
                target.committed(),
                {
                    "status": EMBEDDED,
                    "embedding_model_id": result["model_id"],
                    "embedded_at": run_at,
                },
            )
            for target, result in good
        ]
        # An image deleted during the run loses what was just written for it (its record
        # refused the status); new images get their near-duplicate group; an image replaced
        # and embedded again meanwhile gets its current row back in front of this run's.
        done = [t.committed() for t, _ in good]
        committed = [c for c, ok in zip(done, marked, strict=True) if ok]
        refused = [c for c, ok in zip(done, marked, strict=True) if not ok]
        index = VectorIndex(DataApi(self.settings)) if self.settings.vector_index_enabled else None
        post_commit = PostCommit(
            self.settings, self.images, self.stores.manifests, self.stores.shards, index
        )
        post_summary = post_commit.after_commit(model_id, committed, refused)
        restored = SupersededRows(self.stores).restore(refused, model_id, self.run_id)
        for target, result in bad:
            writer.mark(
                target.committed(),
                {"status": FAILED, "error": f"embedding_failed: {result.get('error')}"},
            )
        return {
            "embedded": len(good),
            "failed": len(bad),
            "shards": sorted(key for key, _ in shards.values()),
            "failures": [{"image_id": t.image_id, "error": r.get("error")} for t, r in bad],
            # what a model upgrade's follow-up needs: which model wrote which prompts' shards
            "model_id": model_id or None,
            "prompts": sorted(shards),
            **post_summary,
            **restored,
        }

    def outputs(self, targets: list[Target], part_lines: int) -> list[dict[str, Any]]:
        """The job's `<part>.out` files, in input order, all of one model."""
        results = []
        for index in range((len(targets) + part_lines - 1) // part_lines):
            text = self._read(f"{self.prefix}output/{input_part(index)}.out").decode("utf-8")
            results += [json.loads(line) for line in text.splitlines() if line.strip()]
        ids = [r.get("image_id") for r in results]
        if ids != [t.image_id for t in targets]:
            raise ValueError(
                f"transform output has {len(results)} lines that do not match the "
                f"{len(targets)} inputs of run {self.run_id}"
            )
        models = {r["model_id"] for r in results if "embedding" in r}
        if len(models) > 1:
            raise ValueError(f"one run produced vectors of several models: {sorted(models)}")
        return results

    def _read(self, key: str) -> bytes:
        return self._s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
