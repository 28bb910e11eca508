#!/usr/bin/python
# Copyright: iSIKHNAS project
# MIT License (the iSIKHNAS project's licence)

from ansible.module_utils.isikhnas_aws import STATE_OPTION, aws_call, aws_change, aws_module, exit_with_diff

DOCUMENTATION = r"""
module: isikhnas_cloudfront_origin_access_control
short_description: Manage a CloudFront origin access control and attach it to a distribution's S3 origin
description:
  - Creates, updates or deletes a CloudFront origin access control (OAC), found by name. An OAC lets a
    distribution read a private S3 bucket (the bucket policy names the distribution); it replaces the legacy
    origin access identities.
  - Optionally makes one origin of a distribution use it (and no origin access identity).
    community.aws.cloudfront_distribution cannot set C(OriginAccessControlId) on an origin, hence this project
    module.
  - Supports check mode and diff mode.
version_added: "1.0.0"
options:
  name:
    description: Name of the origin access control (unique in the account).
    type: str
    required: true
  state:
    description: Whether the origin access control should exist. Deleting fails while a distribution uses it.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Description of the origin access control.
    type: str
    default: ""
  origin_type:
    description: Type of origin it signs requests for.
    type: str
    choices: [s3, mediastore, mediapackagev2, lambda]
    default: s3
  signing_behavior:
    description: C(always) signs every origin request (recommended).
    type: str
    choices: [always, never, no-override]
    default: always
  signing_protocol:
    description: Signing protocol.
    type: str
    choices: [sigv4]
    default: sigv4
  distribution_id:
    description: Id of a distribution one of whose origins should use this origin access control.
    type: str
  origin_id:
    description: Id of that origin (within the distribution). Required with I(distribution_id).
    type: str
author:
  - iSIKHNAS project
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Sign the requests of the static origin
  isikhnas_cloudfront_origin_access_control:
    name: isikhnas-production-static
    description: CloudFront reads the static bucket

- name: Make the static origin of the distribution use it
  isikhnas_cloudfront_origin_access_control:
    name: isikhnas-production-static
    distribution_id: E2EXAMPLE
    origin_id: static
"""

RETURN = r"""
origin_access_control:
  description: The origin access control (empty when absent).
  returned: always
  type: dict
  sample:
    id: E1EXAMPLE
    name: isikhnas-production-static
    description: CloudFront reads the static bucket
    origin_type: s3
    signing_behavior: always
    signing_protocol: sigv4
distribution_updated:
  description: Whether the distribution's origin was changed to use the origin access control.
  returned: always
  type: bool
"""


def summary(control_id, config):
    return {
        "id": control_id,
        "name": config.get("Name"),
        "description": config.get("Description") or "",
        "origin_type": config.get("OriginAccessControlOriginType"),
        "signing_behavior": config.get("SigningBehavior"),
        "signing_protocol": config.get("SigningProtocol"),
    }


def find_by_name(module, client, name):
    """Return (id, config, etag) of the origin access control named ``name``, or (None, {}, None)."""
    msg = f"Failed to look up origin access control {name}"
    marker = None
    while True:
        kwargs = {"Marker": marker} if marker else {}
        page = aws_call(module, msg, client.list_origin_access_controls, **kwargs).get("OriginAccessControlList", {})
        for item in page.get("Items", []) or []:
            if item.get("Name") == name:
                found = aws_call(module, msg, client.get_origin_access_control, Id=item["Id"])
                control = found["OriginAccessControl"]
                return control["Id"], control["OriginAccessControlConfig"], found.get("ETag")
        marker = page.get("NextMarker")
        if not page.get("IsTruncated") or not marker:
            return None, {}, None


def wanted_config(params):
    return {
        "Name": params["name"],
        "Description": params["description"],
        "OriginAccessControlOriginType": params["origin_type"],
        "SigningBehavior": params["signing_behavior"],
        "SigningProtocol": params["signing_protocol"],
    }


def attach(module, client, control_id):
    """Make the origin use the control; return True when the distribution had to change."""
    distribution_id, origin_id = module.params["distribution_id"], module.params["origin_id"]
    response = aws_call(
        module, f"Failed to read distribution {distribution_id}", client.get_distribution_config, Id=distribution_id
    )
    config, etag = response["DistributionConfig"], response["ETag"]
    origins = config.get("Origins", {}).get("Items", [])
    matching = [origin for origin in origins if origin.get("Id") == origin_id]
    if not matching:
        module.fail_json(msg=f"Distribution {distribution_id} has no origin {origin_id}")
    origin = matching[0]
    identity = (origin.get("S3OriginConfig") or {}).get("OriginAccessIdentity", "")
    if origin.get("OriginAccessControlId") == control_id and not identity:
        return False
    origin["OriginAccessControlId"] = control_id
    if "S3OriginConfig" in origin:
        origin["S3OriginConfig"]["OriginAccessIdentity"] = ""
    aws_change(
        module,
        f"Failed to attach the origin access control to {distribution_id}",
        client.update_distribution,
        Id=distribution_id,
        IfMatch=etag,
        DistributionConfig=config,
    )
    return True


def main():
    module, client = aws_module(
        "cloudfront",
        dict(
            name=dict(type="str", required=True),
            state=STATE_OPTION,
            description=dict(type="str", default=""),
            origin_type=dict(type="str", choices=["s3", "mediastore", "mediapackagev2", "lambda"], default="s3"),
            signing_behavior=dict(type="str", choices=["always", "never", "no-override"], default="always"),
            signing_protocol=dict(type="str", choices=["sigv4"], default="sigv4"),
            distribution_id=dict(type="str"),
            origin_id=dict(type="str"),
        ),
        required_together=[("distribution_id", "origin_id")],
    )
    name = module.params["name"]
    control_id, current, etag = find_by_name(module, client, name)
    before = summary(control_id, current) if control_id else {}

    if module.params["state"] == "absent":
        if control_id:
            aws_change(
                module,
                f"Failed to delete origin access control {name}",
                client.delete_origin_access_control,
                Id=control_id,
                IfMatch=etag,
            )
        exit_with_diff(module, bool(control_id), before, {}, origin_access_control={}, distribution_updated=False)

    wanted = wanted_config(module.params)
    changed = False
    if not control_id:
        changed = True
        control_id = "(to be created)"
        created = aws_change(
            module,
            f"Failed to create origin access control {name}",
            client.create_origin_access_control,
            OriginAccessControlConfig=wanted,
        )
        if created:
            control_id = created["OriginAccessControl"]["Id"]
    elif summary(control_id, current) != summary(control_id, wanted):
        changed = True
        aws_change(
            module,
            f"Failed to update origin access control {name}",
            client.update_origin_access_control,
            Id=control_id,
            IfMatch=etag,
            OriginAccessControlConfig=wanted,
        )

    distribution_updated = bool(module.params["distribution_id"]) and attach(module, client, control_id)
    after = summary(control_id, wanted)
    exit_with_diff(
        module,
        changed or distribution_updated,
        before,
        after,
        origin_access_control=after,
        distribution_updated=distribution_updated,
    )


if __name__ == "__main__":
    main()
