"""What a deploy to AWS uploads, built from this repository: the Lambda code package and its
dependencies layer, the MWAA bundle, and the digest that publishes the API's next version; and
infra/template.yaml read as CloudFormation reads it. Nothing here starts the local stack."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
