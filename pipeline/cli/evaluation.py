"""`eval`: pipeline.evaluate's harness (hit@k and precision@10 on a labelled set), in-process
over model artifacts and/or through the running stack."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli.errors import FAILED, USAGE, CliError
from pipeline.cli.output import Output
from pipeline.cli.target import Target


def run_eval(
    target: Target,
    dataset: Path,
    models: list[str],
    through_stack: bool,
    limit: int | None,
    seed: int,
    out: Output,
) -> None:
    from pipeline.evaluate.harness import evaluate
    from pipeline.evaluate.through_api import EvaluationError

    if not models and not through_stack:
        raise CliError("name at least one --model, or --stack", USAGE)
    api_url = target.api().base_url if through_stack else None
    settings = target.settings() if through_stack else None
    try:
        rows = [
            row.as_dict()
            for row in evaluate(dataset, models, api_url, settings, limit=limit, seed=seed)
        ]
    except ValueError as exc:  # the dataset is not a labelled folder or IDX files
        raise CliError(str(exc), USAGE) from None
    except EvaluationError as exc:
        raise CliError(
            f"the stack did not answer what the evaluation needs: {exc}", FAILED
        ) from None
    columns = list(rows[0]) if rows else ["model_id"]
    out.table(f"retrieval on {dataset.name} (index 80% / query 20%)", columns, rows)
    out.data(rows)
