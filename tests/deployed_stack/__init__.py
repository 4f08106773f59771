"""The synthesized stack, deployed into an AWS emulator and driven like a client would drive AWS.

One deployment of the real CDK app into MiniStack (``tests/deployed.py``)
serves every module of this package (``conftest.py`` starts it once, stops it
after the last): API Gateway in front of one Lambda function per operation,
the REQUEST authorizer on every method, the ``blob_verify`` worker, and a
bucket whose presigned URLs are signature-checked, with IAM enforced for every
function's role. What it proves that the template tests cannot: the handler
strings, layers, environment and grants work together on a clean interpreter;
the gateway passes binary bodies, redirects and challenges through untouched;
the authorizer's identity sources and cache behave.

The emulator differs from AWS in ways listed in docs/deploy.md; the harness
bridges them, and nothing deployed is weakened for it. Raw requests send no
``Accept`` unless a test needs one, so bodies must survive API Gateway's binary
handling whatever the client sends.
"""
