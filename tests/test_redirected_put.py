"""What the clients every machine here has do with a 307 answering a PUT with a body (issue 16).

The AWS answer to a blob body too large for API Gateway was chosen from this
table (docs/api.md, "Bodies too large for AWS"): a redirect to the presigned
URL would lose the clients that do not follow it (Python's standard library,
curl without ``-L``) and, where the body was already sent, those that cannot
send it again (a pipe). ``python -m tests.redirect_probe`` adds requests,
httpx and Go's net/http when they are installed.
"""

from __future__ import annotations

import shutil

import pytest

from tests.redirect_probe import CLIENTS, run

EXPECTED = {
    # (client, the registry answered early: before the body when the client sent Expect) -> stored
    ("curl -T file (sends Expect: 100-continue)", "early"): False,
    ("curl -L -T file", "early"): True,
    ("curl -L -T file -H 'Expect:'", "early"): True,
    ("curl -L -X PUT --data-binary @file", "early"): True,
    ("curl -L -T - (a pipe)", "early"): True,
    ("python urllib.request", "early"): False,
    ("python http.client", "early"): False,
    ("curl -L -T - (a pipe)", "after-body"): False,
    ("curl -L -T file", "after-body"): True,
    ("python urllib.request", "after-body"): False,
}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_which_clients_follow_a_307_for_a_put_with_a_body() -> None:
    # WHEN each client PUTs a 12 MiB body to a server that redirects it to a presigned data-plane URL
    results = {(name, mode): stored for mode, name, _, stored in run(CLIENTS)}
    # THEN the bytes land only for the clients that follow, and (once sent) can send them again
    assert {key: results[key] for key in EXPECTED} == EXPECTED
