"""The moto 5.2.5 behaviours the offline tests work around, asserted so that each workaround stays honest.

When one of these starts failing, moto has caught up: remove the matching workaround (see docs/aws.md,
"Offline tests and moto") and strengthen the corresponding assertion in test_infrastructure.py.
"""

from __future__ import annotations

import botocore.exceptions
import botocore.parsers
import pytest
from aws_helpers import REGION, client, moto_server


@pytest.fixture(scope="module")
def aws():
    """A moto server of their own: the probes must not show up in the playbook tests' assertions."""
    with moto_server() as url:
        yield lambda service, region=REGION: client(url, service, region)


def test_backup_selections_are_not_implemented(aws) -> None:
    """Why aws_backup_assign_resources is false in the tests."""
    backup = aws("backup")
    plan = backup.create_backup_plan(
        BackupPlan={
            "BackupPlanName": "limitation-probe",
            "Rules": [{"RuleName": "r", "TargetBackupVaultName": "v", "ScheduleExpression": "cron(0 0/12 * * ? *)"}],
        }
    )
    try:
        with pytest.raises(botocore.exceptions.ClientError) as error:
            backup.create_backup_selection(
                BackupPlanId=plan["BackupPlanId"],
                BackupSelection={
                    "SelectionName": "s",
                    "IamRoleArn": "arn:aws:iam::123456789012:role/r",
                    "Resources": ["arn:aws:ec2:*:*:instance/*"],
                },
            )
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        backup.delete_backup_plan(BackupPlanId=plan["BackupPlanId"])


def test_missing_backup_vault_is_resource_not_found(aws) -> None:
    """Why the tests create the vaults first: amazon.aws.backup_vault expects AWS's AccessDeniedException."""
    with pytest.raises(botocore.exceptions.ClientError) as error:
        aws("backup").describe_backup_vault(BackupVaultName="no-such-vault")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_load_balancer_lacks_the_drop_invalid_header_attribute(aws) -> None:
    """Why aws_compute_alb_drop_invalid_headers is false in the tests."""
    ec2, elb = aws("ec2"), aws("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.99.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    arn = elb.create_load_balancer(Name="limitation-probe", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    try:
        keys = {a["Key"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]}
        assert "routing.http.drop_invalid_header_fields.enabled" not in keys
    finally:
        elb.delete_load_balancer(LoadBalancerArn=arn)
        for subnet in subnets:
            ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_cloudfront_origins_drop_the_origin_access_control_id(aws) -> None:
    """Why test_infrastructure cannot read back the static origin's OriginAccessControlId."""
    cloudfront = aws("cloudfront", "us-east-1")
    control = cloudfront.create_origin_access_control(
        OriginAccessControlConfig={
            "Name": "limitation-probe",
            "SigningProtocol": "sigv4",
            "SigningBehavior": "always",
            "OriginAccessControlOriginType": "s3",
        }
    )["OriginAccessControl"]
    config = {
        "CallerReference": "limitation-probe",
        "Comment": "limitation-probe",
        "Enabled": False,
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "static",
                    "DomainName": "probe.s3.ap-southeast-3.amazonaws.com",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                    "OriginAccessControlId": control["Id"],
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
    created = cloudfront.create_distribution(DistributionConfig=config)
    try:
        origin = cloudfront.get_distribution_config(Id=created["Distribution"]["Id"])["DistributionConfig"]["Origins"]
        assert "OriginAccessControlId" not in origin["Items"][0]
    finally:
        cloudfront.delete_distribution(Id=created["Distribution"]["Id"], IfMatch=created["ETag"])
        etag = cloudfront.get_origin_access_control(Id=control["Id"])["ETag"]
        cloudfront.delete_origin_access_control(Id=control["Id"], IfMatch=etag)


def test_launch_template_versions_cannot_be_deleted(aws) -> None:
    """Why the compute role keeps a single launch template version (see roles/aws_compute/tasks/teardown.yml)."""
    ec2 = aws("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(LaunchTemplateName="limitation-probe", LaunchTemplateData={"ImageId": image})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    try:
        ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": image})
        # moto answers an HTML "500 Internal Server Error" page (NotImplementedError), which botocore cannot parse.
        with pytest.raises(botocore.parsers.ResponseParserError, match="500 Internal Server Error"):
            ec2.delete_launch_template_versions(LaunchTemplateId=template_id, Versions=["1"])
    finally:
        ec2.delete_launch_template(LaunchTemplateId=template_id)


def test_launch_template_tags_leak_into_version_data(aws) -> None:
    """Why the compute role does not tag its launch templates: the second run would add a version 2."""
    ec2 = aws("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName="limitation-tags",
        LaunchTemplateData={"ImageId": image},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "Role", "Value": "web"}]}],
    )["LaunchTemplate"]
    try:
        data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
            "LaunchTemplateVersions"
        ][0]["LaunchTemplateData"]
        assert [s["ResourceType"] for s in data.get("TagSpecifications", [])] == ["launch-template"]
    finally:
        ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
