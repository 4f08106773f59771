"""The bucket: where every blob, manifest and upload lives.

Settings and why:

* Public access blocked and TLS enforced by bucket policy: clients only ever
  reach objects through presigned URLs, which work over HTTPS with the bucket
  private.
* SSE-S3 encryption, not KMS: a presigned GET of a KMS-encrypted object needs
  the *caller's* signing principal to hold ``kms:Decrypt``, and every request
  would pay a KMS call. SSE-S3 is free and transparent to presigning.
* Lifecycle: incomplete multipart uploads (a client that went away mid-push)
  are aborted after ``uploadExpiryDays``, and the ``uploads/`` staging area
  (session files and unverified data, see :mod:`vmregistry.paths`) expires
  on the same clock, so an abandoned push stops costing money on its own.
* No versioning: blobs are content-addressed and immutable, and a deleted
  manifest must really be gone (and stop being billed).
* Removal policy RETAIN by default: ``cdk destroy`` (or a stack replacement)
  must never take the images with it. ``-c retainBucket=false`` makes the
  bucket part of the stack's life cycle (it must be emptied first).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct
from vmregistry.paths import UPLOADS_PREFIX

from infra.config import DeploymentConfig

__all__ = ["Storage"]


class Storage(Construct):
    """One private, encrypted, TLS-only bucket with self-cleaning upload staging."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        expiry = Duration.days(config.upload_expiry_days)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=config.bucket_name or None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN if config.retain_bucket else RemovalPolicy.DESTROY,
            lifecycle_rules=[
                s3.LifecycleRule(id="AbortIncompleteMultipartUploads", abort_incomplete_multipart_upload_after=expiry),
                s3.LifecycleRule(id="ExpireUploadStaging", prefix=UPLOADS_PREFIX, expiration=expiry),
            ],
        )
