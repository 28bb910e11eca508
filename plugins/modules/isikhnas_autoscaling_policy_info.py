#!/usr/bin/python
# Copyright: iSIKHNAS project
# MIT License (the iSIKHNAS project's licence)

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible.module_utils.isikhnas_aws import aws_module, aws_paginate

DOCUMENTATION = r"""
module: isikhnas_autoscaling_policy_info
short_description: List the scaling policies of Auto Scaling groups
description:
  - Returns the scaling policies of one Auto Scaling group, or of all groups of the region (name, ARN, type,
    adjustment, alarms).
  - community.aws.autoscaling_policy does not support check mode, so a check run cannot learn the policy ARNs
    the CloudWatch alarms point at from it; this read-only module can (it runs in check mode too).
version_added: "1.0.0"
options:
  asg_name:
    description: Name of the Auto Scaling group; all groups when omitted.
    type: str
  names:
    description: Only return the policies with these names (all when empty).
    type: list
    elements: str
    default: []
author:
  - iSIKHNAS project
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Find the scaling policies of the processing group
  isikhnas_autoscaling_policy_info:
    asg_name: isikhnas-production-processing
  register: policies

- name: Find given policies of any group
  isikhnas_autoscaling_policy_info:
    names: [isikhnas-production-reporting-scale-out, isikhnas-production-reporting-scale-in]
  register: reporting_policies

- name: Show the ARN of the scale-out policy
  ansible.builtin.debug:
    msg: >-
      {{ policies.policies | selectattr('policy_name', 'eq', 'isikhnas-production-processing-scale-out')
         | map(attribute='policy_arn') }}
"""

RETURN = r"""
policies:
  description: The policies, with boto3 keys in snake_case.
  returned: always
  type: list
  elements: dict
  sample:
    - policy_name: isikhnas-production-processing-scale-out
      policy_arn: "arn:aws:autoscaling:ap-southeast-3:123456789012:scalingPolicy:...:policyName/scale-out"
      policy_type: SimpleScaling
      adjustment_type: ChangeInCapacity
      scaling_adjustment: 1
      alarms: []
"""


def main():
    module, client = aws_module(
        "autoscaling",
        dict(
            asg_name=dict(type="str"),
            names=dict(type="list", elements="str", default=[]),
        ),
    )
    request = {}
    if module.params["asg_name"]:
        request["AutoScalingGroupName"] = module.params["asg_name"]
    if module.params["names"]:
        request["PolicyNames"] = module.params["names"]
    found = aws_paginate(module, "Failed to describe the scaling policies", client, "describe_policies", **request)
    policies = found.get("ScalingPolicies", [])
    module.exit_json(changed=False, policies=[camel_dict_to_snake_dict(p) for p in policies])


if __name__ == "__main__":
    main()
