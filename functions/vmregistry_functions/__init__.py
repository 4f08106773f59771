"""One module per /v1 operation, each exposing ``lambda_handler(event, context)``.

The operations and their paths are listed once, in :data:`vmregistry.routes.ROUTES`;
a module's name is its operation's name.
"""

from vmregistry import coldstart

# Before any handler's imports: each entry point resumes the collector once its module has loaded.
coldstart.pause()
