#!/usr/bin/python
# Copyright: iSIKHNAS project
# MIT License (the iSIKHNAS project's licence)

from ansible.module_utils.isikhnas_aws import STATE_OPTION, aws_call, aws_change, aws_module, exit_with_diff

DOCUMENTATION = r"""
module: isikhnas_s3_bucket_replication
short_description: Manage the replication configuration of an S3 bucket
description:
  - Sets, or removes, the replication configuration of an S3 bucket - one rule copying every object of the
    bucket to a destination bucket (typically in another region), with an IAM role S3 assumes to do it.
  - Neither amazon.aws nor community.aws manages S3 replication, hence this project module.
  - Both buckets must have versioning enabled (an AWS requirement).
  - Compares the wanted rule with the current configuration and only writes when they differ; supports check
    mode and diff mode.
version_added: "1.0.0"
options:
  bucket:
    description: Name of the source bucket.
    type: str
    required: true
  state:
    description: C(present) sets exactly the rule below (any other rule is replaced); C(absent) removes replication.
    type: str
    choices: [present, absent]
    default: present
  role_arn:
    description: ARN of the IAM role S3 assumes to replicate. Required when I(state=present).
    type: str
  destination_bucket_arn:
    description: ARN of the destination bucket (C(arn:aws:s3:::name)). Required when I(state=present).
    type: str
  rule_id:
    description: Identifier of the replication rule.
    type: str
    default: replicate-all
  storage_class:
    description: Storage class of the replicas.
    type: str
    choices: [STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, GLACIER_IR, DEEP_ARCHIVE]
    default: STANDARD_IA
  delete_marker_replication:
    description: Whether delete markers are replicated too (C(false) keeps deleted objects in the replica).
    type: bool
    default: false
author:
  - iSIKHNAS project
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Replicate the backups bucket to the backup region
  isikhnas_s3_bucket_replication:
    bucket: isikhnas-production-123456789012-backups
    role_arn: arn:aws:iam::123456789012:role/isikhnas-production-s3-replication
    destination_bucket_arn: arn:aws:s3:::isikhnas-production-123456789012-backups-replica
    storage_class: STANDARD_IA
"""

RETURN = r"""
replication:
  description: The replication configuration after the change (empty when absent), as returned by S3.
  returned: always
  type: dict
  sample:
    Role: arn:aws:iam::123456789012:role/replication
    Rules:
      - ID: replicate-all
        Status: Enabled
        Priority: 1
        Filter: {Prefix: ""}
        DeleteMarkerReplication: {Status: Disabled}
        Destination: {Bucket: "arn:aws:s3:::replica", StorageClass: STANDARD_IA}
"""


def wanted_configuration(params):
    return {
        "Role": params["role_arn"],
        "Rules": [
            {
                "ID": params["rule_id"],
                "Priority": 1,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "DeleteMarkerReplication": {"Status": "Enabled" if params["delete_marker_replication"] else "Disabled"},
                "Destination": {
                    "Bucket": params["destination_bucket_arn"],
                    "StorageClass": params["storage_class"],
                },
            }
        ],
    }


def comparable(config):
    """Reduce a configuration to the fields this module manages, so S3's extra defaults do not read as drift."""
    if not config:
        return {}
    rules = []
    for rule in config.get("Rules", []):
        destination = rule.get("Destination", {})
        rules.append(
            {
                "ID": rule.get("ID"),
                "Priority": int(rule.get("Priority", 0) or 0),
                "Status": rule.get("Status"),
                "Prefix": (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", "")) or "",
                "DeleteMarkerReplication": (rule.get("DeleteMarkerReplication") or {}).get("Status", "Disabled"),
                "Bucket": destination.get("Bucket"),
                "StorageClass": destination.get("StorageClass", "STANDARD"),
            }
        )
    return {"Role": config.get("Role"), "Rules": sorted(rules, key=lambda r: r["ID"] or "")}


def current_configuration(module, client, bucket):
    response = aws_call(
        module,
        f"Failed to read the replication configuration of {bucket}",
        client.get_bucket_replication,
        missing=["ReplicationConfigurationNotFoundError"],
        Bucket=bucket,
    )
    return (response or {}).get("ReplicationConfiguration", {})


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        state=STATE_OPTION,
        role_arn=dict(type="str"),
        destination_bucket_arn=dict(type="str"),
        rule_id=dict(type="str", default="replicate-all"),
        storage_class=dict(
            type="str",
            choices=[
                "STANDARD",
                "STANDARD_IA",
                "ONEZONE_IA",
                "INTELLIGENT_TIERING",
                "GLACIER",
                "GLACIER_IR",
                "DEEP_ARCHIVE",
            ],
            default="STANDARD_IA",
        ),
        delete_marker_replication=dict(type="bool", default=False),
    )
    module, client = aws_module(
        "s3", argument_spec, required_if=[("state", "present", ["role_arn", "destination_bucket_arn"])]
    )
    bucket = module.params["bucket"]

    before = current_configuration(module, client, bucket)
    if module.params["state"] == "present":
        wanted = wanted_configuration(module.params)
        changed = comparable(before) != comparable(wanted)
        after = wanted if changed else before
        if changed and not module.check_mode:
            aws_call(
                module,
                f"Failed to set the replication configuration of {bucket}",
                client.put_bucket_replication,
                Bucket=bucket,
                ReplicationConfiguration=wanted,
            )
            after = current_configuration(module, client, bucket)
    else:
        changed = bool(before)
        after = {}
        if changed:
            aws_change(
                module,
                f"Failed to remove the replication configuration of {bucket}",
                client.delete_bucket_replication,
                Bucket=bucket,
            )

    exit_with_diff(module, changed, comparable(before), comparable(after), replication=after)


if __name__ == "__main__":
    main()
