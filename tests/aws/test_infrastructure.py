"""playbooks/aws_infrastructure.yml and aws_teardown.yml against moto: build, assert, re-run, check, tear down.

The playbook runs once to create; as soon as that run is done, it runs once again and once with --check
(concurrently: both only read a converged estate), while the tests that read the estate with boto3 and
ansible-inventory run meanwhile (they only read too); then the teardown. The tests of this module run in file
order and share those runs.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
import yaml
from aws_helpers import ADMIN_CIDRS, BACKUP_REGION, PREFIX, REGION, ROOT, Ansible, Run, Started

PLAYBOOK = "playbooks/aws_infrastructure.yml"
TEARDOWN = "playbooks/aws_teardown.yml"
DOMAIN = "isikhnas.example.org"
PRIVATE_DOMAIN = "isikhnas.internal"
ZONES = {"zone_a": f"{REGION}a", "zone_b": f"{REGION}b"}
SUBNETS = {
    "zone_a": {"public": "10.40.0.0/24", "app": "10.40.10.0/24", "db": "10.40.20.0/24"},
    "zone_b": {"public": "10.40.1.0/24", "app": "10.40.11.0/24", "db": "10.40.21.0/24"},
}
FIXED = {
    "db1": ("db", "zone_a"),
    "db2": ("db", "zone_a"),
    "db3": ("db", "zone_b"),
    "messaging1": ("messaging", "zone_a"),
    "wiki1": ("wiki", "zone_a"),
}
NAT = "nat1"
QUEUES = ["incoming-email", "processing", "outgoing-email", "reporting", "outgoing-im"]
BUCKETS = ["static", "temporary", "reports", "inbound-mail", "backups"]
TIERS = ["nat", "web", "wiki", "processing", "reporting", "messaging", "db"]
PRIVATE_CIDRS = [SUBNETS[z][t] for z in SUBNETS for t in ("app", "db")]

# The security-group matrix of issue 4, plus two documented necessities: the NAT forwards the private subnets'
# HTTP(S) (else it is no NAT), and the load balancer reaches the wiki (the wiki host name routes there).
SSH_FROM_BASTION = {(group, "nat", 22) for group in ("web", "wiki", "processing", "reporting", "messaging", "db")}
EXPECTED_MATRIX = (
    {("nat", cidr, 22) for cidr in ADMIN_CIDRS}
    | {("nat", cidr, port) for cidr in PRIVATE_CIDRS for port in (80, 443)}
    | {("alb", "0.0.0.0/0", 443), ("alb", "0.0.0.0/0", 80)}
    | {("web", "alb", 80), ("wiki", "alb", 80)}
    | SSH_FROM_BASTION
    | {("db", source, 5432) for source in ("web", "processing", "reporting", "wiki", "messaging", "db")}
)


def bucket(purpose: str) -> str:
    return f"{PREFIX}-123456789012-{purpose}"


def allows(documents: list[dict], action: str, resource: str) -> bool:
    """Does any Allow statement of these policies grant ``action`` on ``resource`` (conditions ignored: an
    over-approximation, so a False is a real "cannot")."""
    for document in documents:
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if (
                statement["Effect"] == "Allow"
                and any(fnmatch.fnmatch(action.lower(), a.lower()) for a in actions)
                and any(fnmatch.fnmatch(resource, r) for r in resources)
            ):
                return True
    return False


def as_document(value) -> dict:
    return json.loads(unquote(value)) if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------- runs


def start_early(request: pytest.FixtureRequest):
    """The first (create) run starts with the session, while the quick tests run (see conftest.early)."""
    ansible, test_vars = request.getfixturevalue("ansible"), request.getfixturevalue("test_vars")
    return ansible.start("ansible-playbook", PLAYBOOK, "-e", f"@{test_vars}")


@dataclass
class Converged:
    """The create run, and the second and --check runs started the moment it succeeded."""

    created: Run
    second: Started
    check: Started


@pytest.fixture(scope="module")
def converged(ansible: Ansible, early: dict, test_vars) -> Converged:
    """Waits for the create run, then starts the second run and the --check run together: on a converged estate
    both only read, like the tests that run meanwhile."""
    run = ansible.finish(early[__name__], "create run")
    assert run.rc == 0, run.explain()
    second = ansible.start("ansible-playbook", PLAYBOOK, "-e", f"@{test_vars}")
    check = ansible.start("ansible-playbook", PLAYBOOK, "-e", f"@{test_vars}", "--check", "--diff")
    return Converged(run, second, check)


@pytest.fixture(scope="module")
def created(converged: Converged) -> Run:
    return converged.created


@pytest.fixture(scope="module")
def rerun_and_check(ansible: Ansible, converged: Converged) -> tuple[Run, Run]:
    """The second run and the --check run, once both are done."""
    return ansible.finish(converged.second, "second run"), ansible.finish(converged.check, "check run")


@pytest.fixture(scope="module")
def vpc_id(aws, created: Run) -> str:
    vpcs = aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [PREFIX]}])["Vpcs"]
    assert len(vpcs) == 1
    return vpcs[0]["VpcId"]


@pytest.fixture(scope="module")
def subnets(aws, vpc_id: str) -> dict[tuple[str, str], dict]:
    found = aws("ec2").describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    by_key = {}
    for subnet in found:
        tags = {t["Key"]: t["Value"] for t in subnet.get("Tags", [])}
        by_key[(tags["Zone"], tags["Tier"])] = subnet
    return by_key


@pytest.fixture(scope="module")
def instances(aws, vpc_id: str) -> dict[str, dict]:
    """Live instances of the VPC by Hostname tag (fixed hosts) or instance id (Auto Scaling instances)."""
    pages = aws("ec2").describe_instances(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    result = {}
    for reservation in pages:
        for instance in reservation["Instances"]:
            instance["tags"] = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            result[instance["tags"].get("Hostname", instance["InstanceId"])] = instance
    return result


# ---------------------------------------------------------------------------------------------- network


def test_first_run_creates_everything(created: Run) -> None:
    assert created.recap["failed"] == 0
    assert created.recap["changed"] > 30, created.explain()


def test_two_zones_with_a_subnet_per_tier(subnets: dict) -> None:
    assert set(subnets) == {(zone, tier) for zone in ZONES for tier in ("public", "app", "db")}
    for (zone, tier), subnet in subnets.items():
        assert subnet["AvailabilityZone"] == ZONES[zone]
        assert subnet["CidrBlock"] == SUBNETS[zone][tier]
        assert not subnet["MapPublicIpOnLaunch"]
    assert len({s["AvailabilityZone"] for s in subnets.values()}) == 2


def test_routing_public_via_igw_private_via_nat(aws, vpc_id: str, subnets: dict, instances: dict) -> None:
    ec2 = aws("ec2")
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]
    table_of = {}
    for table in tables:
        for association in table.get("Associations", []):
            if association.get("SubnetId"):
                table_of[association["SubnetId"]] = table
    igw = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])
    igw_id = igw["InternetGateways"][0]["InternetGatewayId"]
    nat_id = instances[NAT]["InstanceId"]
    for (zone, tier), subnet in subnets.items():
        routes = table_of[subnet["SubnetId"]]["Routes"]
        defaults = [r for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        assert len(defaults) == 1, (zone, tier, routes)
        if tier == "public":
            assert defaults[0].get("GatewayId") == igw_id
        else:
            # Application and database subnets: out through the NAT instance, never the internet gateway.
            assert defaults[0].get("InstanceId") == nat_id, (zone, tier, routes)
            assert not any(r.get("GatewayId") == igw_id for r in routes), (zone, tier, routes)


def test_only_the_nat_has_a_public_address(aws, instances: dict) -> None:
    public = {name for name, i in instances.items() if i.get("PublicIpAddress")}
    assert public == {NAT}
    nat = instances[NAT]
    addresses = aws("ec2").describe_addresses()["Addresses"]
    assert [a["PublicIp"] for a in addresses if a.get("InstanceId") == nat["InstanceId"]] == [nat["PublicIpAddress"]]
    eip_tags = {t["Key"]: t["Value"] for t in addresses[0].get("Tags", [])}
    assert eip_tags["Role"] == "nat"
    check = aws("ec2").describe_instance_attribute(InstanceId=nat["InstanceId"], Attribute="sourceDestCheck")
    assert check["SourceDestCheck"]["Value"] is False
    assert nat["SubnetId"]  # in the public subnet of zone_a, see test_fixed_instances


def test_security_group_matrix_is_exactly_as_declared(aws, vpc_id: str) -> None:
    groups = aws("ec2").describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
    ours = {g["GroupId"]: g for g in groups if g["GroupName"] != "default"}
    role_of = {gid: {t["Key"]: t["Value"] for t in g.get("Tags", [])}["Role"] for gid, g in ours.items()}
    assert sorted(role_of.values()) == sorted(
        ["nat", "alb", "web", "wiki", "processing", "reporting", "messaging", "db"]
    )
    actual = set()
    for gid, group in ours.items():
        for permission in group["IpPermissions"]:
            assert permission["IpProtocol"] == "tcp"
            assert permission["FromPort"] == permission["ToPort"], permission
            for ip_range in permission.get("IpRanges", []):
                actual.add((role_of[gid], ip_range["CidrIp"], permission["FromPort"]))
            for pair in permission.get("UserIdGroupPairs", []):
                actual.add((role_of[gid], role_of[pair["GroupId"]], permission["FromPort"]))
            assert not permission.get("Ipv6Ranges")
            assert not permission.get("PrefixListIds")
    assert actual == EXPECTED_MATRIX, {"missing": EXPECTED_MATRIX - actual, "unexpected": actual - EXPECTED_MATRIX}


# ---------------------------------------------------------------------------------------------- IAM


def test_iam_role_per_tier_with_only_its_permissions(aws, created: Run) -> None:
    iam = aws("iam")
    policies = {}
    for tier in TIERS:
        name = f"{PREFIX}-{tier}"
        role = iam.get_role(RoleName=name)["Role"]
        trust = as_document(role["AssumeRolePolicyDocument"])
        assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [name]
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        names = iam.list_role_policies(RoleName=name)["PolicyNames"]
        policies[tier] = [
            as_document(iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"]) for n in names
        ]
    for tier in ("nat", "web", "wiki"):
        assert policies[tier] == [], tier

    queue = f"arn:aws:sqs:{REGION}:123456789012:{PREFIX}-"
    processing = policies["processing"]
    assert allows(processing, "sqs:ReceiveMessage", queue + "processing")
    assert allows(processing, "sqs:DeleteMessage", queue + "processing")
    for target in ("outgoing-email", "reporting"):
        assert allows(processing, "sqs:SendMessage", queue + target)
    assert not allows(processing, "sqs:ReceiveMessage", queue + "reporting")
    # The spot check of the issue: processing cannot write (nor read) the backups bucket.
    assert not allows(processing, "s3:PutObject", f"arn:aws:s3:::{bucket('backups')}/base/0001")
    assert not allows(processing, "s3:GetObject", f"arn:aws:s3:::{bucket('backups')}/base/0001")

    reporting = policies["reporting"]
    assert allows(reporting, "s3:PutObject", f"arn:aws:s3:::{bucket('reports')}/2026/report.pdf")
    assert not allows(reporting, "s3:PutObject", f"arn:aws:s3:::{bucket('backups')}/x")

    db = policies["db"]
    assert allows(db, "s3:PutObject", f"arn:aws:s3:::{bucket('backups')}/wal/0001")
    assert allows(db, "s3:GetObject", f"arn:aws:s3:::{bucket('backups')}/wal/0001")
    assert allows(db, "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z123")
    writer = next(s for d in db for s in d["Statement"] if s.get("Sid") == "MoveWriterRecord")
    condition = writer["Condition"]["ForAllValues:StringEquals"]
    assert condition["route53:ChangeResourceRecordSetsNormalizedRecordNames"] == [f"db-primary.{PRIVATE_DOMAIN}"]
    assert not allows(db, "sqs:SendMessage", queue + "processing")

    messaging = policies["messaging"]
    assert allows(messaging, "ses:SendRawEmail", "*")
    assert allows(messaging, "s3:GetObject", f"arn:aws:s3:::{bucket('inbound-mail')}/inbound/abc")
    assert not allows(messaging, "s3:PutObject", f"arn:aws:s3:::{bucket('inbound-mail')}/inbound/abc")


# ---------------------------------------------------------------------------------------------- queues, buckets


def test_queues_each_with_dead_letter_queue_encryption_and_long_polling(aws, created: Run) -> None:
    sqs = aws("sqs")
    for purpose in QUEUES:
        url = sqs.get_queue_url(QueueName=f"{PREFIX}-{purpose}")["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=f"{PREFIX}-{purpose}-dlq")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
        assert int(redrive["maxReceiveCount"]) >= 1
        for attrs in (attributes, dlq):
            assert attrs["ReceiveMessageWaitTimeSeconds"] == "20"
            assert attrs.get("SqsManagedSseEnabled") == "true" or attrs.get("KmsMasterKeyId")
        assert int(dlq["MessageRetentionPeriod"]) >= int(attributes["MessageRetentionPeriod"])
    inbound = sqs.get_queue_url(QueueName=f"{PREFIX}-incoming-email")["QueueUrl"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=inbound, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Statement"][0]["Principal"] == {"Service": "sns.amazonaws.com"}


def test_buckets_encrypted_private_versioned_and_replicated(aws, created: Run) -> None:
    s3 = aws("s3")
    versioned = {"reports", "inbound-mail", "backups"}
    for purpose in BUCKETS:
        name = bucket(purpose)
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert len(block) == 4, block
        assert all(block.values()), block
        status = s3.get_bucket_versioning(Bucket=name).get("Status")
        assert (status == "Enabled") == (purpose in versioned), (purpose, status)
        policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
        deny = [s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
        assert [s["Effect"] for s in deny] == ["Deny"], purpose
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket("temporary"))["Rules"]
    assert [r["Expiration"]["Days"] for r in lifecycle] == [7]
    ses_policy = json.loads(s3.get_bucket_policy(Bucket=bucket("inbound-mail"))["Policy"])
    assert {"Service": "ses.amazonaws.com"} in [s.get("Principal") for s in ses_policy["Statement"]]

    replication = s3.get_bucket_replication(Bucket=bucket("backups"))["ReplicationConfiguration"]
    assert replication["Role"] == f"arn:aws:iam::123456789012:role/{PREFIX}-s3-replication"
    assert replication["Rules"][0]["Status"] == "Enabled"
    assert replication["Rules"][0]["Destination"]["Bucket"] == f"arn:aws:s3:::{bucket('backups')}-replica"
    role_policy = aws("iam").get_role_policy(RoleName=f"{PREFIX}-s3-replication", PolicyName="replicate")
    writes = [s for s in as_document(role_policy["PolicyDocument"])["Statement"] if s["Sid"] == "WriteReplicas"]
    assert writes[0]["Resource"] == [f"arn:aws:s3:::{bucket('backups')}-replica/*"]
    replica = aws("s3", BACKUP_REGION)
    assert replica.get_bucket_location(Bucket=f"{bucket('backups')}-replica")["LocationConstraint"] == BACKUP_REGION
    assert replica.get_bucket_versioning(Bucket=f"{bucket('backups')}-replica")["Status"] == "Enabled"
    assert all(
        replica.get_public_access_block(Bucket=f"{bucket('backups')}-replica")[
            "PublicAccessBlockConfiguration"
        ].values()
    )


def test_inbound_mail_lands_in_the_bucket_and_is_announced_to_the_queue(aws, created: Run) -> None:
    ses = aws("ses")
    identities = ses.list_identities()["Identities"]
    assert DOMAIN in identities
    assert f"noreply@{DOMAIN}" in identities
    active = ses.describe_active_receipt_rule_set()
    assert active["Metadata"]["Name"] == PREFIX
    rule = ses.describe_receipt_rule(RuleSetName=PREFIX, RuleName="store-inbound")["Rule"]
    action = rule["Actions"][0]["S3Action"]
    topic = f"arn:aws:sns:{REGION}:123456789012:{PREFIX}-inbound-mail"
    assert action["BucketName"] == bucket("inbound-mail")
    assert action["TopicArn"] == topic
    assert rule["Recipients"] == [DOMAIN]
    subscriptions = aws("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [
        ("sqs", f"arn:aws:sqs:{REGION}:123456789012:{PREFIX}-incoming-email")
    ]


# ---------------------------------------------------------------------------------------------- compute


def test_fixed_instances_placed_and_tagged(aws, instances: dict, subnets: dict) -> None:
    for hostname, (role, zone) in {**FIXED, NAT: ("nat", "zone_a")}.items():
        instance = instances[hostname]
        tier = "public" if role == "nat" else ("db" if role == "db" else "app")
        assert instance["SubnetId"] == subnets[(zone, tier)]["SubnetId"], hostname
        assert instance["Placement"]["AvailabilityZone"] == ZONES[zone]
        tags = instance["tags"]
        assert (tags["Role"], tags["Zone"], tags["Environment"]) == (role, zone, "production")
        assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{PREFIX}-{role}")
        assert [g["GroupName"] for g in instance["SecurityGroups"]] == [f"{PREFIX}-{role}"]
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
    db_zones = {instances[h]["Placement"]["AvailabilityZone"] for h, (r, _) in FIXED.items() if r == "db"}
    assert len(db_zones) == 2


def test_load_balancer_https_with_redirect_and_wiki_rule(aws, subnets: dict) -> None:
    elb = aws("elbv2")
    alb = elb.describe_load_balancers(Names=[PREFIX])["LoadBalancers"][0]
    assert alb["Scheme"] == "internet-facing"
    assert {a["SubnetId"] for a in alb["AvailabilityZones"]} == {subnets[(z, "public")]["SubnetId"] for z in ZONES}
    groups = {g["TargetGroupName"]: g for g in elb.describe_target_groups()["TargetGroups"]}
    found = elb.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    listeners = {listener["Port"]: listener for listener in found}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"][0]["CertificateArn"].startswith(f"arn:aws:acm:{REGION}:")
    assert https["DefaultActions"][0]["TargetGroupArn"] == groups[f"{PREFIX}-web"]["TargetGroupArn"]
    rules = [r for r in elb.describe_rules(ListenerArn=https["ListenerArn"])["Rules"] if not r["IsDefault"]]
    assert rules[0]["Actions"][0]["TargetGroupArn"] == groups[f"{PREFIX}-wiki"]["TargetGroupArn"]
    assert rules[0]["Conditions"][0]["Values"] == [f"wiki.{DOMAIN}"]
    http = listeners[80]["DefaultActions"][0]
    assert http["Type"] == "redirect"
    assert http["RedirectConfig"]["Protocol"] == "HTTPS"
    wiki_targets = elb.describe_target_health(TargetGroupArn=groups[f"{PREFIX}-wiki"]["TargetGroupArn"])
    assert len(wiki_targets["TargetHealthDescriptions"]) == 1


def test_auto_scaling_groups_span_both_zones_with_their_scaling(aws, subnets: dict) -> None:
    autoscaling, cloudwatch = aws("autoscaling"), aws("cloudwatch")
    app_subnets = {subnets[(z, "app")]["SubnetId"] for z in ZONES}
    groups = {g["AutoScalingGroupName"]: g for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert set(groups) == {f"{PREFIX}-{t}" for t in ("web", "processing", "reporting")}
    web_tg = aws("elbv2").describe_target_groups(Names=[f"{PREFIX}-web"])["TargetGroups"][0]["TargetGroupArn"]
    for name, group in groups.items():
        # moto puts every instance in the first subnet: the group's subnets are what is asserted.
        assert set(group["VPCZoneIdentifier"].split(",")) == app_subnets, name
        assert group["MinSize"] <= group["MaxSize"]
        assert group["LaunchTemplate"]["LaunchTemplateName"] == name
        tags = {t["Key"]: t["Value"] for t in group["Tags"]}
        assert tags["Role"] == name.rsplit("-", 1)[1]
        assert tags["Environment"] == "production"
        assert group["TargetGroupARNs"] == ([web_tg] if name.endswith("-web") else [])
    policies = {p["PolicyName"]: p for p in autoscaling.describe_policies()["ScalingPolicies"]}
    web = policies[f"{PREFIX}-web-cpu"]
    assert web["PolicyType"] == "TargetTrackingScaling"
    assert (
        web["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "ASGAverageCPUUtilization"
    )
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    for tier in ("processing", "reporting"):
        for step, adjustment in (("scale-out", 1), ("scale-in", -1)):
            policy = policies[f"{PREFIX}-{tier}-{step}"]
            assert policy["AutoScalingGroupName"] == f"{PREFIX}-{tier}"
            assert policy["ScalingAdjustment"] == adjustment
            alarm = alarms[f"{PREFIX}-{tier}-{step}"]
            assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
            assert alarm["Namespace"] == "AWS/SQS"
            assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": f"{PREFIX}-{tier}"}]
            assert alarm["AlarmActions"] == [policy["PolicyARN"]]
    for tier in ("web", "processing", "reporting"):
        data = aws("ec2").describe_launch_template_versions(
            LaunchTemplateName=f"{PREFIX}-{tier}", Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
        assert data["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{PREFIX}-{tier}")


# ---------------------------------------------------------------------------------------------- edge, DNS, backup


def test_cloudfront_https_only_in_front_of_the_load_balancer(aws, created: Run) -> None:
    cloudfront = aws("cloudfront", "us-east-1")
    items = cloudfront.list_distributions()["DistributionList"]["Items"]
    ours = [d for d in items if d["Comment"] == PREFIX]
    assert len(ours) == 1
    config = cloudfront.get_distribution_config(Id=ours[0]["Id"])["DistributionConfig"]
    assert sorted(config["Aliases"]["Items"]) == sorted([DOMAIN, f"www.{DOMAIN}"])
    assert config["ViewerCertificate"]["ACMCertificateArn"].startswith("arn:aws:acm:us-east-1:")
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "https-only"
    assert config["DefaultCacheBehavior"]["TargetOriginId"] == "application"
    origins = {o["Id"]: o for o in config["Origins"]["Items"]}
    assert origins["application"]["DomainName"] == f"origin.{DOMAIN}"
    assert origins["application"]["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origins["static"]["DomainName"] == f"{bucket('static')}.s3.{REGION}.amazonaws.com"
    behaviours = config["CacheBehaviors"]["Items"]
    assert [(b["PathPattern"], b["TargetOriginId"], b["ViewerProtocolPolicy"]) for b in behaviours] == [
        ("/static/*", "static", "https-only")
    ]
    controls = cloudfront.list_origin_access_controls()["OriginAccessControlList"]["Items"]
    control = [c for c in controls if c["Name"] == f"{PREFIX}-static"]
    assert len(control) == 1
    assert control[0]["SigningBehavior"] == "always"
    # moto 5.2.5 keeps no OriginAccessControlId on origins (its Origin model has no such field), so the
    # attachment made by isikhnas_cloudfront_origin_access_control cannot be read back here. Asserted, so that a
    # moto that keeps it makes this test point at the stronger assertion to write instead.
    assert (
        "OriginAccessControlId" not in origins["static"]
        or origins["static"]["OriginAccessControlId"] == control[0]["Id"]
    )
    policy = json.loads(aws("s3").get_bucket_policy(Bucket=bucket("static"))["Policy"])
    read = next(s for s in policy["Statement"] if s["Sid"] == "CloudFrontReadsStaticFiles")
    assert read["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert read["Condition"]["StringEquals"]["AWS:SourceArn"] == ours[0]["ARN"]


def test_dns_public_and_private_records(aws, vpc_id: str, instances: dict) -> None:
    route53 = aws("route53")
    zones = {z["Name"]: z for z in route53.list_hosted_zones()["HostedZones"]}
    public, private = zones[f"{DOMAIN}."], zones[f"{PRIVATE_DOMAIN}."]
    assert private["Config"]["PrivateZone"]
    assert not public["Config"]["PrivateZone"]
    assert route53.get_hosted_zone(Id=private["Id"])["VPCs"][0]["VPCId"] == vpc_id

    def records(zone):
        sets = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
        return {(r["Name"].rstrip("."), r["Type"]): r for r in sets}

    pub = records(public)
    distribution = next(
        d
        for d in aws("cloudfront", "us-east-1").list_distributions()["DistributionList"]["Items"]
        if d["Comment"] == PREFIX
    )
    alb = aws("elbv2").describe_load_balancers(Names=[PREFIX])["LoadBalancers"][0]
    for name in (DOMAIN, f"www.{DOMAIN}"):
        assert pub[(name, "A")]["AliasTarget"]["DNSName"].rstrip(".") == distribution["DomainName"]
        assert pub[(name, "A")]["AliasTarget"]["HostedZoneId"] == "Z2FDTNDATAQYW2"
    for name in (f"origin.{DOMAIN}", f"wiki.{DOMAIN}"):
        assert pub[(name, "A")]["AliasTarget"]["DNSName"].rstrip(".").lower() == alb["DNSName"].lower()
    assert pub[(f"bastion.{DOMAIN}", "A")]["ResourceRecords"] == [{"Value": instances[NAT]["PublicIpAddress"]}]
    assert pub[(f"_amazonses.{DOMAIN}", "TXT")]["ResourceRecords"][0]["Value"].startswith('"')
    assert pub[(DOMAIN, "MX")]["ResourceRecords"] == [{"Value": f"10 inbound-smtp.{REGION}.amazonaws.com"}]

    priv = records(private)
    for hostname in [*FIXED, NAT]:
        assert priv[(f"{hostname}.{PRIVATE_DOMAIN}", "A")]["ResourceRecords"] == [
            {"Value": instances[hostname]["PrivateIpAddress"]}
        ]
    writer = priv[(f"db-primary.{PRIVATE_DOMAIN}", "A")]
    assert writer["ResourceRecords"] == [{"Value": instances["db1"]["PrivateIpAddress"]}]
    assert writer["TTL"] == 30


def test_backup_every_12_hours_with_copy_to_the_second_region(aws, created: Run) -> None:
    backup = aws("backup")
    plans = [p for p in backup.list_backup_plans()["BackupPlansList"] if p["BackupPlanName"] == PREFIX]
    assert len(plans) == 1
    plan = backup.get_backup_plan(BackupPlanId=plans[0]["BackupPlanId"])["BackupPlan"]
    rule = plan["Rules"][0]
    assert rule["ScheduleExpression"] == "cron(0 0/12 * * ? *)"
    assert rule["TargetBackupVaultName"] == PREFIX
    assert rule["Lifecycle"]["DeleteAfterDays"] == 14
    copy = rule["CopyActions"][0]
    assert (
        copy["DestinationBackupVaultArn"] == f"arn:aws:backup:{BACKUP_REGION}:123456789012:backup-vault:{PREFIX}-copy"
    )
    assert copy["Lifecycle"]["DeleteAfterDays"] == 14
    vaults = [v["BackupVaultName"] for v in aws("backup", BACKUP_REGION).list_backup_vaults()["BackupVaultList"]]
    assert f"{PREFIX}-copy" in vaults
    attached = aws("iam").list_attached_role_policies(RoleName=f"{PREFIX}-backup")["AttachedPolicies"]
    assert {p["PolicyName"] for p in attached} == {
        "AWSBackupServiceRolePolicyForBackup",
        "AWSBackupServiceRolePolicyForRestores",
    }


def test_backup_selection_covers_every_instance(instances: dict) -> None:
    """moto has no backup selections (test_moto_limitations): the selection the role declares is read from the
    role and matched against the live instances instead: it must pick every instance, fixed and Auto Scaling."""
    tasks = yaml.safe_load((ROOT / "roles" / "aws_backup" / "tasks" / "plan.yml").read_text())
    selection = next(t["amazon.aws.backup_selection"] for t in tasks if "amazon.aws.backup_selection" in t)
    assert selection["resources"] == ["arn:aws:ec2:*:*:instance/*"]
    conditions = {c["condition_key"]: c["condition_value"] for c in selection["conditions"]["string_equals"]}
    assert conditions == {
        "aws:ResourceTag/Project": "{{ aws_common_project }}",
        "aws:ResourceTag/Environment": "{{ aws_common_environment }}",
    }
    assert len(instances) == len(FIXED) + 1 + 2 + 1 + 1  # fixed hosts, nat, web x2, processing, reporting
    for name, instance in instances.items():
        assert instance["tags"]["Project"] == "isikhnas", name
        assert instance["tags"]["Environment"] == "production", name
        assert all("Ebs" in mapping for mapping in instance["BlockDeviceMappings"]), name


# ---------------------------------------------------------------------------------------------- inventory


def plain(value):
    """ansible-inventory --list marks untrusted strings as {"__ansible_unsafe": value}."""
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def test_production_inventory_groups_hosts_like_the_lab(ansible: Ansible, moto_url: str, instances: dict) -> None:
    env = {"AWS_URL": moto_url}
    graph = ansible.run(
        "ansible-inventory", "-i", "inventories/production", "--graph", env=env, label="inventory graph"
    )
    assert graph.rc == 0, graph.explain()
    groups: dict[str, set[str]] = {}
    current = None
    for line in graph.output.splitlines():
        if match := re.match(r"^[\s|]*--@(\S+):$|^@(\S+):$", line):
            current = match.group(1) or match.group(2)
            groups.setdefault(current, set())
        elif current and (host := re.match(r"^[\s|]*--([^@\s]\S*)$", line)):
            groups[current].add(host.group(1))
    # The group names of the lab inventory: tiers, zones, and fleet (what site.yml configures).
    assert groups["nat"] == {NAT}
    assert groups["db"] == {"db1", "db2", "db3"}
    assert groups["messaging"] == {"messaging1"}
    assert groups["wiki"] == {"wiki1"}
    assert len(groups["web"]) == 2
    assert all(h.startswith("web-i-") for h in groups["web"])
    assert len(groups["processing"]) == 1
    assert len(groups["reporting"]) == 1
    assert {NAT, "db1", "db2", "messaging1", "wiki1"} <= groups["zone_a"]
    assert {"db3"} <= groups["zone_b"]
    assert not groups["zone_a"] & groups["zone_b"]
    tiers = ("nat", "db", "web", "messaging", "processing", "reporting", "wiki")
    assert groups["fleet"] == set().union(*(groups[t] for t in tiers))
    assert groups["fleet"] == groups["zone_a"] | groups["zone_b"]

    listing = ansible.run(
        "ansible-inventory", "-i", "inventories/production", "--list", env=env, label="inventory list"
    )
    assert listing.rc == 0, listing.explain()
    hostvars = json.loads(listing.output[listing.output.index("{") :])["_meta"]["hostvars"]
    assert plain(hostvars[NAT]["ansible_host"]) == instances[NAT]["PublicIpAddress"]
    assert plain(hostvars["db1"]["ansible_host"]) == instances["db1"]["PrivateIpAddress"]
    assert ipaddress.ip_address(plain(hostvars["wiki1"]["ansible_host"])).is_private
    # Private hosts are reached through the bastion, with the SSH certificate (group_vars/all/ssh.yml).
    shown = ansible.run(
        "ansible",
        f"db1:{NAT}",
        "-i",
        "inventories/production",
        "-m",
        "ansible.builtin.debug",
        "-a",
        "var=ansible_ssh_common_args",
        env=env,
        label="inventory ssh args of db1 and nat1",
    )
    assert shown.rc == 0, shown.explain()
    for host, through_bastion in (("db1", True), (NAT, False)):
        args = " ".join(adhoc_result(shown, host).split())
        assert "CertificateFile=" in args, args
        assert ("admin@bastion.isikhnas.example.org" in args) == through_bastion, args


def adhoc_result(run: Run, host: str) -> str:
    """The result an ad-hoc ansible run printed for one host: its ``host | SUCCESS =>`` line and what follows,
    up to the next host's result."""
    blocks = re.split(r"^(?=\S+ \| [A-Z]+)", run.output, flags=re.MULTILINE)
    found = [block for block in blocks if block.startswith(f"{host} | SUCCESS")]
    assert len(found) == 1, (host, run.explain())
    return found[0]


# ---------------------------------------------------------------------------------------------- re-runs
# These wait for the second and --check runs, which the tests above overlapped (see converged).


def test_second_run_changes_nothing(rerun_and_check: tuple[Run, Run]) -> None:
    second, _ = rerun_and_check
    assert second.rc == 0, second.explain()
    assert second.recap["changed"] == 0, second.explain()
    # The documented moto CloudFront case: cloudfront_distribution would report a change on every run, so the
    # role only creates the distribution when none exists. On this second run that task (and the origin access
    # control attachment that follows a creation) must be skipped.
    for task in ("Create the distribution", "Make the static origin of the new distribution use"):
        assert second.task_results(task) == ["skipping: [localhost]"], (task, second.task_results(task))


def test_check_run_reports_no_change(rerun_and_check: tuple[Run, Run]) -> None:
    _, check = rerun_and_check
    assert check.rc == 0, check.explain()
    assert check.recap["changed"] == 0, check.explain()
    assert check.recap["failed"] == 0


# ---------------------------------------------------------------------------------------------- teardown


def test_teardown_leaves_nothing(ansible: Ansible, aws, test_vars, rerun_and_check) -> None:
    run = ansible.run("ansible-playbook", TEARDOWN, "-e", f"@{test_vars}", label="teardown")
    assert run.rc == 0, run.explain()
    ec2 = aws("ec2")
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    live = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}]
    )
    assert live["Reservations"] == []
    assert ec2.describe_addresses()["Addresses"] == []
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert aws("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert aws("elbv2").describe_target_groups()["TargetGroups"] == []
    assert aws("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert aws("autoscaling").describe_policies()["ScalingPolicies"] == []
    assert aws("cloudwatch").describe_alarms()["MetricAlarms"] == []
    iam = aws("iam")
    assert [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)] == []
    assert iam.list_instance_profiles()["InstanceProfiles"] == []
    assert aws("s3").list_buckets()["Buckets"] == []
    assert aws("sqs").list_queues().get("QueueUrls", []) == []
    assert aws("sns").list_topics()["Topics"] == []
    assert aws("ses").list_identities()["Identities"] == []
    assert aws("ses").list_receipt_rule_sets()["RuleSets"] == []
    assert aws("route53").list_hosted_zones()["HostedZones"] == []
    cloudfront = aws("cloudfront", "us-east-1")
    assert cloudfront.list_distributions()["DistributionList"].get("Items", []) == []
    assert cloudfront.list_origin_access_controls()["OriginAccessControlList"].get("Items", []) == []
    for region in (REGION, BACKUP_REGION):
        assert aws("backup", region).list_backup_plans()["BackupPlansList"] == []
        assert aws("backup", region).list_backup_vaults()["BackupVaultList"] == []
