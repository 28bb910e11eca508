"""Create the python_daemons scenario's AWS resources on its moto server, in one process (prepare.yml).

The queues with their dead-letter queues and redrive policy, the inbound-mail and reports buckets, and the
verified sender, as the aws_* roles would create them for real. One boto3 process instead of one Ansible module
run per resource keeps the scenario's prepare step short. Idempotent; prints what it created as JSON.

Usage: moto_resources.py ENDPOINT_URL REGION PREFIX SENDER
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

import boto3

QUEUES = ("incoming-email", "processing", "outgoing-email", "outgoing-im", "reporting")
MAX_RECEIVE_COUNT = 3
VISIBILITY_TIMEOUT = 10


def wait_for(endpoint: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    endpoint, region, prefix, sender = sys.argv[1:5]
    wait_for(endpoint)
    options = {
        "endpoint_url": endpoint,
        "region_name": region,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sqs, s3, ses = (boto3.client(name, **options) for name in ("sqs", "s3", "ses"))
    for purpose in QUEUES:
        dlq_url = sqs.create_queue(QueueName=f"{prefix}-{purpose}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = {"maxReceiveCount": MAX_RECEIVE_COUNT, "deadLetterTargetArn": dlq_arn}
        url = sqs.create_queue(QueueName=f"{prefix}-{purpose}")["QueueUrl"]
        sqs.set_queue_attributes(
            QueueUrl=url,
            Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT), "RedrivePolicy": json.dumps(policy)},
        )
    for purpose in ("inbound", "reports"):
        s3.create_bucket(Bucket=f"{prefix}-{purpose}")
    ses.verify_email_identity(EmailAddress=sender)
    print(json.dumps({"queues": sorted(sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
