#!/usr/bin/python
# Copyright: iSIKHNAS project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

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
    msg: "{{ policies.policies | selectattr('policy_name', 'eq', 'isikhnas-production-processing-scale-out') | map(attribute='policy_arn') }}"
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

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            asg_name=dict(type="str"),
            names=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    client = module.client("autoscaling", retry_decorator=AWSRetry.jittered_backoff())
    request = {}
    if module.params["asg_name"]:
        request["AutoScalingGroupName"] = module.params["asg_name"]
    if module.params["names"]:
        request["PolicyNames"] = module.params["names"]
    try:
        paginator = client.get_paginator("describe_policies")
        policies = paginator.paginate(**request).build_full_result().get("ScalingPolicies", [])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Failed to describe the scaling policies")
    module.exit_json(changed=False, policies=[camel_dict_to_snake_dict(p) for p in policies])


if __name__ == "__main__":
    main()
