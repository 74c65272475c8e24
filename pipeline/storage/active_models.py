"""The active-model pointer of each prompt: which model's shards answer the prompt's lookups.

Per prompt, not global: each prompt's backfill completes on its own, and a prompt is what a
lookup ranks, so a finished prompt switches at once instead of waiting for the slowest one.
The pointer is an item of the ShardManifests table, `(prompt, "@active")`, beside the
manifests it points at (no new table, and one Query reads a prompt's pointer and manifests).
It carries `version` 0 and no shards, so code that reads every manifest sees an empty one.
A prompt without a pointer is answered by the query image's own model (as before upgrades).
A pointer moved by an upgrade also names the new model's artifact (`active_model_data_url`), so
an embedding run that wrote a switched prompt's new images with another model knows which
artifact re-embeds them; a pointer pinned before an upgrade names none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.manifests_table import ACTIVE_KEY, ManifestStore

__all__ = ["ACTIVE_KEY", "ActiveModels", "Pointer"]


@dataclass(frozen=True)
class Pointer:
    """A prompt's active model, and the artifact that embeds with it (None: pinned, not
    switched by an upgrade, or switched before pointers named one)."""

    model_id: str
    model_data_url: str | None = None


class ActiveModels(aws.Adapter):
    """Read, pin and switch (with a condition on the current value) the prompts' pointers."""

    service = "dynamodb"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self.table = settings.shard_manifests_table

    def get(self, prompt: str) -> str | None:
        pointer = self.pointer(prompt)
        return pointer.model_id if pointer else None

    def pointer(self, prompt: str) -> Pointer | None:
        """The prompt's pointer with its artifact; None when the prompt has none."""
        response = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"prompt": {"S": prompt}, "model_id": {"S": ACTIVE_KEY}},
        )
        item = response.get("Item")
        if not item:
            return None
        url = item.get("active_model_data_url", {}).get("S")
        return Pointer(item["active_model_id"]["S"], url)

    def model_data_url(self, prompt: str) -> str | None:
        """The artifact of the prompt's active model, when an upgrade's switch recorded it."""
        pointer = self.pointer(prompt)
        return pointer.model_data_url if pointer else None

    def pin(self, prompt: str, model_id: str, at: str) -> str:
        """Point the prompt at `model_id` unless it points somewhere already; the active one."""
        if self.switch(prompt, None, model_id, at):
            return model_id
        return self.get(prompt) or model_id

    def switch(
        self,
        prompt: str,
        expected: str | None,
        new: str,
        at: str,
        model_data_url: str | None = None,
    ) -> bool:
        """Point the prompt at `new` only if it points at `expected` now (None: at nothing):
        two upgrades racing cannot both win, and a pointer moved by hand is never overwritten.
        Switching to where it already points is a success (a retried task). `model_data_url`,
        the artifact of `new`, is recorded so new images of the prompt can be re-embedded."""
        condition = (
            "attribute_not_exists(prompt)"
            if expected is None
            else "active_model_id = :expected OR active_model_id = :new"
        )
        values = {":new": {"S": new}}
        if expected is not None:
            values[":expected"] = {"S": expected}
        item = {
            "prompt": {"S": prompt},
            "model_id": {"S": ACTIVE_KEY},
            "active_model_id": {"S": new},
            "switched_at": {"S": at},
            "version": {"N": "0"},
        }
        if expected is not None:
            item["previous_model_id"] = {"S": expected}
        if model_data_url:
            item["active_model_data_url"] = {"S": model_data_url}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if expected is not None else {}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return self.get(prompt) == new if expected is None else False
        return True

    def models(self, prompt: str) -> dict[str, int]:
        """The models with shards for the prompt and their row counts (pointer excluded)."""
        manifests = ManifestStore(self.settings, self.client).of_prompt(prompt)
        return {m.model_id: m.rows for m in manifests}

    def all(self) -> dict[str, str]:
        """Every prompt's pointer: {prompt: active model} (a Scan; for commands, not lookups)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="model_id = :active",
            ExpressionAttributeValues={":active": {"S": ACTIVE_KEY}},
        )
        return {
            item["prompt"]["S"]: item["active_model_id"]["S"]
            for page in pages
            for item in page.get("Items", [])
        }
