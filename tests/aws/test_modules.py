"""Unit tests of the project modules in plugins/modules, run in-process against moto (mock_aws)."""

from __future__ import annotations

import importlib.util
import json
import sys

import ansible.module_utils
import boto3
import pytest
from ansible.module_utils.testing import patch_module_args
from aws_helpers import REGION, ROOT
from moto import mock_aws

ACCOUNT = "123456789012"
# The project's module_utils, importable as ansible.module_utils.<name> as Ansible makes them (ansible.cfg).
MODULE_UTILS = str(ROOT / "plugins" / "module_utils")
if MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(MODULE_UTILS)


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "plugins" / "modules" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(module_name: str, capsys: pytest.CaptureFixture, check_mode: bool = False, **args) -> dict:
    """Run a module's main() with these arguments; return its JSON result (with 'failed' on fail_json)."""
    module = load(module_name)
    arguments = {"region": REGION, "access_key": "testing", "secret_key": "testing", **args}
    if check_mode:
        arguments["_ansible_check_mode"] = True
    with patch_module_args(arguments), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for variable in ("AWS_URL", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield lambda service, region=REGION: boto3.client(service, region_name=region)


# ---------------------------------------------------------------------------------------------- S3 replication


def test_s3_bucket_replication(aws, capsys) -> None:
    s3 = aws("s3")
    for name, region in (("source", REGION), ("replica", "ap-southeast-1")):
        aws("s3", region).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        aws("s3", region).put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    args = {
        "bucket": "source",
        "role_arn": f"arn:aws:iam::{ACCOUNT}:role/replication",
        "destination_bucket_arn": "arn:aws:s3:::replica",
    }
    first = run("isikhnas_s3_bucket_replication", capsys, **args)
    assert first["changed"] is True
    rules = s3.get_bucket_replication(Bucket="source")["ReplicationConfiguration"]["Rules"]
    assert rules[0]["Destination"] == {"Bucket": "arn:aws:s3:::replica", "StorageClass": "STANDARD_IA"}
    assert rules[0]["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert run("isikhnas_s3_bucket_replication", capsys, **args)["changed"] is False

    checked = run("isikhnas_s3_bucket_replication", capsys, check_mode=True, storage_class="STANDARD", **args)
    assert checked["changed"] is True
    assert checked["diff"]["after"]["Rules"][0]["StorageClass"] == "STANDARD"
    stored = s3.get_bucket_replication(Bucket="source")["ReplicationConfiguration"]["Rules"][0]
    assert stored["Destination"]["StorageClass"] == "STANDARD_IA"  # check mode wrote nothing

    assert run("isikhnas_s3_bucket_replication", capsys, bucket="source", state="absent")["changed"] is True
    assert run("isikhnas_s3_bucket_replication", capsys, bucket="source", state="absent")["changed"] is False
    missing = run("isikhnas_s3_bucket_replication", capsys, bucket="source")
    assert missing["failed"]
    assert "role_arn" in missing["msg"]


# ---------------------------------------------------------------------------------------------- SES receipt rule


def test_ses_receipt_rule(aws, capsys) -> None:
    ses = aws("ses")
    aws("s3").create_bucket(Bucket="inbound", CreateBucketConfiguration={"LocationConstraint": REGION})
    ses.create_receipt_rule_set(RuleSetName="rules")
    args = {
        "rule_set": "rules",
        "name": "store",
        "recipients": ["example.org"],
        "actions": [{"S3Action": {"BucketName": "inbound", "ObjectKeyPrefix": "inbound/"}}],
    }
    assert run("isikhnas_ses_receipt_rule", capsys, **args)["changed"] is True
    rule = ses.describe_receipt_rule(RuleSetName="rules", RuleName="store")["Rule"]
    assert rule["Recipients"] == ["example.org"]
    assert rule["TlsPolicy"] == "Require"
    assert run("isikhnas_ses_receipt_rule", capsys, **args)["changed"] is False

    other = {**args, "recipients": ["mail.example.org"]}
    assert run("isikhnas_ses_receipt_rule", capsys, check_mode=True, **other)["changed"] is True
    assert ses.describe_receipt_rule(RuleSetName="rules", RuleName="store")["Rule"]["Recipients"] == ["example.org"]
    assert run("isikhnas_ses_receipt_rule", capsys, **other)["changed"] is True
    assert ses.describe_receipt_rule(RuleSetName="rules", RuleName="store")["Rule"]["Recipients"] == [
        "mail.example.org"
    ]

    # moto 5.2.5 has no DeleteReceiptRule: deletion is exercised in check mode (the teardown deletes the rule set).
    assert (
        run("isikhnas_ses_receipt_rule", capsys, check_mode=True, rule_set="rules", name="store", state="absent")[
            "changed"
        ]
        is True
    )
    assert run("isikhnas_ses_receipt_rule", capsys, rule_set="rules", name="other", state="absent")["changed"] is False
    assert run("isikhnas_ses_receipt_rule", capsys, rule_set="gone", name="store", state="absent")["changed"] is False
    failed = run("isikhnas_ses_receipt_rule", capsys, **{**args, "rule_set": "gone"})
    assert failed["failed"]
    assert "does not exist" in failed["msg"]


# ---------------------------------------------------------------------------------------------- scaling policies


def test_autoscaling_policy_info(aws, capsys) -> None:
    ec2, autoscaling = aws("ec2"), aws("autoscaling")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="template", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
    )
    for group in ("processing", "reporting"):
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group,
            LaunchTemplate={"LaunchTemplateName": "template"},
            MinSize=0,
            MaxSize=2,
            AvailabilityZones=[f"{REGION}a"],
        )
        for step, adjustment in (("scale-out", 1), ("scale-in", -1)):
            autoscaling.put_scaling_policy(
                AutoScalingGroupName=group,
                PolicyName=f"{group}-{step}",
                AdjustmentType="ChangeInCapacity",
                ScalingAdjustment=adjustment,
            )
    processing = run("isikhnas_autoscaling_policy_info", capsys, asg_name="processing")
    assert processing["changed"] is False
    assert sorted(p["policy_name"] for p in processing["policies"]) == ["processing-scale-in", "processing-scale-out"]
    assert all(p["policy_arn"].startswith("arn:aws:autoscaling:") for p in processing["policies"])
    named = run("isikhnas_autoscaling_policy_info", capsys, check_mode=True, names=["reporting-scale-out"])
    assert [(p["policy_name"], p["scaling_adjustment"]) for p in named["policies"]] == [("reporting-scale-out", 1)]
    assert len(run("isikhnas_autoscaling_policy_info", capsys)["policies"]) == 4


# ---------------------------------------------------------------------------------------------- CloudFront OAC


def distribution(cloudfront) -> str:
    config = {
        "CallerReference": "test",
        "Comment": "test",
        "Enabled": True,
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "static",
                    "DomainName": "static.s3.ap-southeast-3.amazonaws.com",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "static",
            "ViewerProtocolPolicy": "https-only",
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "MinTTL": 0,
        },
    }
    return cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


def test_cloudfront_origin_access_control(aws, capsys) -> None:
    cloudfront = aws("cloudfront", "us-east-1")
    args = {"name": "static", "description": "reads static", "region": "us-east-1"}

    checked = run("isikhnas_cloudfront_origin_access_control", capsys, check_mode=True, **args)
    assert checked["changed"] is True
    assert cloudfront.list_origin_access_controls()["OriginAccessControlList"].get("Items", []) == []

    created = run("isikhnas_cloudfront_origin_access_control", capsys, **args)
    assert created["changed"] is True
    assert created["origin_access_control"]["signing_behavior"] == "always"
    items = cloudfront.list_origin_access_controls()["OriginAccessControlList"]["Items"]
    assert [(i["Name"], i["Id"]) for i in items] == [("static", created["origin_access_control"]["id"])]
    assert run("isikhnas_cloudfront_origin_access_control", capsys, **args)["changed"] is False
    updated = run("isikhnas_cloudfront_origin_access_control", capsys, **{**args, "description": "new"})
    assert updated["changed"] is True
    assert updated["diff"]["before"]["description"] == "reads static"

    distribution_id = distribution(cloudfront)
    attached = run(
        "isikhnas_cloudfront_origin_access_control",
        capsys,
        **{**args, "description": "new", "distribution_id": distribution_id, "origin_id": "static"},
    )
    assert attached["changed"] is True
    assert attached["distribution_updated"] is True
    unknown = run(
        "isikhnas_cloudfront_origin_access_control",
        capsys,
        **{**args, "description": "new", "distribution_id": distribution_id, "origin_id": "nope"},
    )
    assert unknown["failed"]
    assert "no origin nope" in unknown["msg"]

    assert (
        run("isikhnas_cloudfront_origin_access_control", capsys, name="static", state="absent", region="us-east-1")[
            "changed"
        ]
        is True
    )
    assert (
        run("isikhnas_cloudfront_origin_access_control", capsys, name="static", state="absent", region="us-east-1")[
            "changed"
        ]
        is False
    )
