"""The AWS provider over boto3 (imported only when a target uses ``type: aws``)."""

from reconciler.awserrors import AwsPermanentError, AwsTemporaryError, Scrubber
from reconciler.providers.aws.calls import AwsStats
from reconciler.providers.aws.provider import AWS_KINDS, AwsProvider
from reconciler.providers.aws.regions import MultiRegionAwsProvider, aws_provider
from reconciler.providers.aws.session import AwsOptions
from reconciler.providers.aws.tags import NAME_TAG, PROTECTED_TAG, TARGET_TAG

__all__ = [
    "AWS_KINDS",
    "AwsProvider",
    "MultiRegionAwsProvider",
    "aws_provider",
    "AwsOptions",
    "AwsStats",
    "AwsTemporaryError",
    "AwsPermanentError",
    "Scrubber",
    "TARGET_TAG",
    "NAME_TAG",
    "PROTECTED_TAG",
]
