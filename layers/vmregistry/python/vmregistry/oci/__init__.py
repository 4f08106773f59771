"""The OCI formats, as pure functions: no storage, no HTTP.

- :mod:`.mediatypes`: every manifest and index media type the registry knows.
- :mod:`.manifests`: parse and validate a manifest or index once, into a typed result.
- :mod:`.referrers`: the referrers API's answer (an image index) from stored descriptors.
- :mod:`.chunks`: ``Content-Range`` of chunked uploads and the ``Range`` that reports progress.
- :mod:`.vmimage`: a VM image's two spellings, the seed's ``/v1`` manifest and its OCI form.

Nothing is imported here, so a handler loads only the module it uses (cold starts).
"""
