"""The pure parts of `cadenza deploy` (cadenza_tools/deploy.py); the whole command runs
against moto's CloudFormation in tests/e2e/test_deploy_moto.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cadenza_tools import deploy, infra

ROOT = Path(__file__).resolve().parents[2]


def _sam() -> dict[str, Any]:
    """The merge template with one function, as `chalice package` would merge it."""
    template: dict[str, Any] = json.loads((ROOT / infra.TEMPLATE_PATH).read_text())
    template["Transform"] = "AWS::Serverless-2016-10-31"
    template["Resources"] = {
        "Supervisor": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Runtime": "python3.11",
                "Handler": "app.supervisor",
                "CodeUri": "./deployment.zip",
                "Role": "arn:aws:iam::123456789012:role/r",
                "Events": {
                    "SupervisorEvent": {
                        "Type": "Schedule",
                        "Properties": {"Schedule": "rate(1 minute)"},
                    }
                },
            },
        }
    }
    template.pop("Outputs")
    return template


def test_a_package_takes_only_its_own_stage() -> None:
    pinned = deploy.pin_stage(_sam(), "prod")
    parameter = pinned["Parameters"][infra.STAGE_PARAMETER]
    assert parameter["AllowedValues"] == ["prod"]
    assert "packaged for stage prod" in parameter["ConstraintDescription"]
    with pytest.raises(deploy.DeployError, match="no stage 'qa'"):
        deploy.pin_stage(_sam(), "qa")


def test_the_sam_transform_is_expanded_with_the_uploaded_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # the region comes from --region
        monkeypatch.delenv(variable, raising=False)
    sam = deploy.with_code(deploy.pin_stage(_sam(), "dev"), "artifacts", "cadenza-dev/abc.zip")
    template = deploy.expand(sam, "dev", "eu-west-1")
    assert "Transform" not in template
    function = template["Resources"]["Supervisor"]
    assert function["Type"] == "AWS::Lambda::Function"
    assert function["Properties"]["Code"] == {
        "S3Bucket": "artifacts",
        "S3Key": "cadenza-dev/abc.zip",
    }
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::Events::Rule" in kinds
    assert not any(k.startswith("AWS::Serverless") for k in kinds)
    assert template["Parameters"]["Stage"]["AllowedValues"] == ["dev"]


def test_first_steps_name_the_url_and_how_to_subscribe() -> None:
    text = deploy.first_steps(
        deploy.Target("prod"),
        {"EndpointURL": "https://x.example/api/", "AlertsTopicArn": "arn:aws:sns:r:1:t"},
    )
    assert "export CADENZA_URL=https://x.example/api/" in text
    assert "aws sns subscribe --topic-arn arn:aws:sns:r:1:t" in text
