"""The AWS deployment: one CDK stack that ``npx cdk deploy`` turns into a running registry.

One stack (:class:`~infra.stack.VmRegistryStack`) made of constructs, one module each:

* :mod:`infra.storage`: the S3 bucket (private, encrypted, TLS only, RETAINed,
  self-cleaning upload staging);
* :mod:`infra.functions`: one Lambda per entry of
  :data:`vmregistry.routes.FUNCTIONS` (API operations, workers, the
  authorizer), each with IAM derived from its grants, and the layers (shared
  package, pip-built dependencies, public key);
* :mod:`infra.auth`: the REQUEST authorizer and its result cache;
* :mod:`infra.api`: the REST API with every route, method and repository depth;
* :mod:`infra.monitoring`: alarms on client-visible failures.

Routing names with slashes: a greedy ``{proxy+}`` may only end an API Gateway
path, so each named route is declared once per repository depth, 1 to
``maxRepositoryDepth`` (``/v1/{name1}/{name2}/blobs/{digest}``), all
integrating with the operation's one function, which re-matches the full path
itself. :mod:`infra.api` explains the details and the one limitation.

Parameters are CDK context values (:mod:`infra.config`), defaults in ``cdk.json``;
``docs/deploy.md`` is the user's guide. The package imports the domain package
(``vmregistry``) for the route table, key layout and authorizer cache design,
never a copy of them.
"""

from __future__ import annotations

from infra.config import DeploymentConfig, cdk_json_context

# The app and stack live in infra.app and infra.stack: importing them here would
# load the CDK for every user of the configuration and confuse ``python -m infra.app``.
__all__ = ["DeploymentConfig", "cdk_json_context"]
