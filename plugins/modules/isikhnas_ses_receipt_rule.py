#!/usr/bin/python
# Copyright: iSIKHNAS project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

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
      - The rule's actions in the SES API format (a list of dicts such as C({S3Action: {BucketName, ObjectKeyPrefix}})).
        Required when I(state=present).
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

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


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
    try:
        return client.describe_receipt_rule(aws_retry=True, RuleSetName=rule_set, RuleName=name).get("Rule", {})
    except is_boto3_error_code("RuleDoesNotExist"):
        return {}
    except is_boto3_error_code("RuleSetDoesNotExist"):  # pylint: disable=duplicate-except
        if module.params["state"] == "absent":
            return {}
        module.fail_json(msg=f"Receipt rule set {rule_set} does not exist")
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg=f"Failed to describe receipt rule {name} of {rule_set}")


def main():
    argument_spec = dict(
        rule_set=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        enabled=dict(type="bool", default=True),
        recipients=dict(type="list", elements="str", default=[]),
        scan_enabled=dict(type="bool", default=True),
        tls_policy=dict(type="str", choices=["Require", "Optional"], default="Require"),
        actions=dict(type="list", elements="dict"),
        after=dict(type="str"),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["actions"])],
        supports_check_mode=True,
    )
    client = module.client("ses", retry_decorator=AWSRetry.jittered_backoff())
    rule_set, name = module.params["rule_set"], module.params["name"]

    before = current_rule(module, client, rule_set, name)
    after = {}
    if module.params["state"] == "present":
        wanted = wanted_rule(module.params)
        changed = normalise(before) != normalise(wanted)
        after = wanted if changed else before
        if changed and not module.check_mode:
            try:
                if before:
                    client.update_receipt_rule(aws_retry=True, RuleSetName=rule_set, Rule=wanted)
                else:
                    extra = {"After": module.params["after"]} if module.params["after"] else {}
                    client.create_receipt_rule(aws_retry=True, RuleSetName=rule_set, Rule=wanted, **extra)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                module.fail_json_aws(e, msg=f"Failed to write receipt rule {name} of {rule_set}")
            after = current_rule(module, client, rule_set, name)
    else:
        changed = bool(before)
        if changed and not module.check_mode:
            try:
                client.delete_receipt_rule(aws_retry=True, RuleSetName=rule_set, RuleName=name)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                module.fail_json_aws(e, msg=f"Failed to delete receipt rule {name} of {rule_set}")

    module.exit_json(changed=changed, rule=after, diff={"before": normalise(before), "after": normalise(after)})


if __name__ == "__main__":
    main()
