# Copyright: iSIKHNAS project
# MIT License (the iSIKHNAS project's licence)
"""What the project's AWS modules (plugins/modules/isikhnas_*.py) share: the module and its client, AWS calls
that fail the module with a message, and the result with its diff.

Modules import it as ``ansible.module_utils.isikhnas_aws`` (ansible.cfg: ``module_utils = plugins/module_utils``).
The endpoint, region and credentials come from the usual amazon.aws options (module_defaults in the playbooks).
"""

import contextlib

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

with contextlib.suppress(ImportError):
    import botocore  # a missing botocore is reported by AnsibleAWSModule

# The usual state option of a module that manages one thing.
STATE_OPTION = dict(type="str", choices=["present", "absent"], default="present")


def aws_module(service, argument_spec, **options):
    """The module (check mode supported) and a boto3 client for ``service`` that retries throttled calls."""
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True, **options)
    return module, module.client(service, retry_decorator=AWSRetry.jittered_backoff())


def aws_call(module, msg, method, missing=(), **params):
    """Call the client method ``method(aws_retry=True, **params)`` and return its answer.

    An error whose code is in ``missing`` (the thing asked for does not exist) returns None; any other AWS error
    fails the module with ``msg`` and the error.
    """
    try:
        return method(aws_retry=True, **params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        if missing and isinstance(e, is_boto3_error_code(list(missing), e=e)):
            return None
        module.fail_json_aws(e, msg=msg)


def aws_change(module, msg, method, **params):
    """Like aws_call for a call that changes something: skipped (None) in check mode."""
    if module.check_mode:
        return None
    return aws_call(module, msg, method, **params)


def aws_paginate(module, msg, client, operation, **params):
    """The full result of a paginated describe/list operation, or fail the module with ``msg``."""
    try:
        return client.get_paginator(operation).paginate(**params).build_full_result()
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=msg)


def exit_with_diff(module, changed, before, after, **result):
    """End the module: ``changed``, the other results, and the diff from ``before`` to ``after``."""
    module.exit_json(changed=changed, diff={"before": before, "after": after}, **result)
