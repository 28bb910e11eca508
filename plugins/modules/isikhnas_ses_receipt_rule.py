#!/usr/bin/python
# Copyright: iSIKHNAS project
# MIT License (the iSIKHNAS project's licence)

from ansible.module_utils.isikhnas_aws import STATE_OPTION, aws_call, aws_change, aws_module, exit_with_diff

DOCUMENTATION = r"""
module: isikhnas_ses_receipt_rule
short_description: Manage one receipt rule of an SES receipt rule set
description:
  - Creates, updates or deletes a receipt rule (what SES does with inbound mail for some recipients) in an
    existing receipt rule set. community.aws.ses_rule_set manages the rule sets but not the rules, hence this
    project module.
  - The rule is compared with the current one and only written when it differs; supports check mode and diff.
version_added: "1.0.0"
options:
  rule_set:
    description: Name of the receipt rule set (see community.aws.ses_rule_set).
    type: str
    required: true
  name:
    description: Name of the rule.
    type: str
    required: true
  state:
    description: Whether the rule should exist.
    type: str
    choices: [present, absent]
    default: present
  enabled:
    description: Whether the rule is active.
    type: bool
    default: true
  recipients:
    description: Addresses or domains the rule applies to; empty means every verified identity.
    type: list
    elements: str
    default: []
  scan_enabled:
    description: Whether SES scans the mail for spam and viruses.
    type: bool
    default: true
  tls_policy:
    description: C(Require) refuses mail not sent over TLS.
    type: str
    choices: [Require, Optional]
    default: Require
  actions:
    description:
      - "The rule's actions in the SES API format: a list of dicts such as
        C(S3Action: {BucketName: ..., ObjectKeyPrefix: ..., TopicArn: ...})."
      - Required when I(state=present).
    type: list
    elements: dict
  after:
    description: Put a new rule after this rule of the set (only used when the rule is created).
    type: str
author:
  - iSIKHNAS project
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Store inbound mail for the domain in S3
  isikhnas_ses_receipt_rule:
    rule_set: isikhnas-production
    name: store-inbound
    recipients: [isikhnas.example.org]
    actions:
      - S3Action:
          BucketName: isikhnas-production-123456789012-inbound-mail
          ObjectKeyPrefix: inbound/
"""

RETURN = r"""
rule:
  description: The rule after the change, as SES describes it (empty when absent).
  returned: always
  type: dict
  sample:
    Name: store-inbound
    Enabled: true
    TlsPolicy: Require
    Recipients: [isikhnas.example.org]
    ScanEnabled: true
    Actions:
      - S3Action: {BucketName: inbound, ObjectKeyPrefix: inbound/}
"""


def normalise(value):
    """Make API answers and wanted values comparable: booleans and numbers as lower-case strings, no empties."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in sorted(value.items()) if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    return value


def wanted_rule(params):
    return {
        "Name": params["name"],
        "Enabled": params["enabled"],
        "TlsPolicy": params["tls_policy"],
        "Recipients": params["recipients"],
        "Actions": params["actions"],
        "ScanEnabled": params["scan_enabled"],
    }


def current_rule(module, client, rule_set, name):
    """The rule as SES describes it; {} when there is none, or no rule set either and the rule should be absent
    (a missing rule set fails a rule that should be present, with SES's "Rule set does not exist")."""
    missing = ["RuleDoesNotExist"]
    if module.params["state"] == "absent":
        missing.append("RuleSetDoesNotExist")
    response = aws_call(
        module,
        f"Failed to describe receipt rule {name} of {rule_set}",
        client.describe_receipt_rule,
        missing=missing,
        RuleSetName=rule_set,
        RuleName=name,
    )
    return (response or {}).get("Rule", {})


def main():
    argument_spec = dict(
        rule_set=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=STATE_OPTION,
        enabled=dict(type="bool", default=True),
        recipients=dict(type="list", elements="str", default=[]),
        scan_enabled=dict(type="bool", default=True),
        tls_policy=dict(type="str", choices=["Require", "Optional"], default="Require"),
        actions=dict(type="list", elements="dict"),
        after=dict(type="str"),
    )
    module, client = aws_module("ses", argument_spec, required_if=[("state", "present", ["actions"])])
    rule_set, name = module.params["rule_set"], module.params["name"]

    before = current_rule(module, client, rule_set, name)
    after = {}
    if module.params["state"] == "present":
        wanted = wanted_rule(module.params)
        changed = normalise(before) != normalise(wanted)
        after = wanted if changed else before
        if changed and not module.check_mode:
            msg = f"Failed to write receipt rule {name} of {rule_set}"
            if before:
                aws_call(module, msg, client.update_receipt_rule, RuleSetName=rule_set, Rule=wanted)
            else:
                extra = {"After": module.params["after"]} if module.params["after"] else {}
                aws_call(module, msg, client.create_receipt_rule, RuleSetName=rule_set, Rule=wanted, **extra)
            after = current_rule(module, client, rule_set, name)
    else:
        changed = bool(before)
        if changed:
            aws_change(
                module,
                f"Failed to delete receipt rule {name} of {rule_set}",
                client.delete_receipt_rule,
                RuleSetName=rule_set,
                RuleName=name,
            )

    exit_with_diff(module, changed, normalise(before), normalise(after), rule=after)


if __name__ == "__main__":
    main()
