"""Logins: the development token endpoint, ``vmregistry login``, renewal mid-push, docker's config and helpers.

One registry runs for the whole package (``conftest.py``) with ``-token-users``
(the opt-in token endpoint of local mode), tokens that live 2 seconds and no
leeway for clock skew, so a token that expired is refused for real. Keys are
real RSA keys, tokens real RS256 JWTs; the credential helper is a real
program on ``PATH`` that speaks docker's helper protocol and logs what it was
asked.
"""
