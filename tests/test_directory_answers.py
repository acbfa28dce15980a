"""The key directory's lookup answers are built once per epoch and checkpoint: a kept
answer is byte for byte the one built afresh, and a new epoch is answered at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from servers import AccountServer, RunningServer, start_account_server, start_reference_server

from keyflows.conformance.clients import seal_with_application_key, to_json
from keyflows.reference.common import prepared_json
from keyflows.reference.directory import ANSWERS_KEPT, BuiltAnswers

PATHS = ("/v1/directory/keypair/dir-alice/app", "/v1/directory/keypair/dir-alice/app/history",
         "/v1/directory/uid/dir-nobody@example.org")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[AccountServer, RunningServer]]:
    account = start_account_server()
    server = start_reference_server(account.url, tmp_path_factory.mktemp("dir") / "db.sqlite")
    yield account, server
    server.stop()
    account.stop()


def publish(server: RunningServer, account: AccountServer, user: str) -> None:
    _, token = account.mint(user)
    sealed = seal_with_application_key(user, "app", 1)
    answer = httpx.put(f"{server.url}/v1/users/{user}/apps/app/keypair",
                       content=to_json(sealed.record), trust_env=False,
                       headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/json"})
    assert answer.status_code == 201


def served(server: RunningServer, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    answer = httpx.get(f"{server.url}{path}", trust_env=False)
    headers = [(k, v) for k, v in answer.headers.multi_items() if k not in ("date", "server")]
    return answer.status_code, headers, answer.content


def test_a_kept_answer_is_the_built_one_until_the_next_epoch(
        running: tuple[AccountServer, RunningServer]) -> None:
    account, server = running
    publish(server, account, "dir-alice")
    first = {path: served(server, path) for path in PATHS}
    assert all(status == 200 for status, _, _ in first.values())
    assert {path: served(server, path) for path in PATHS} == first  # kept
    server.app_state.directory_answers = BuiltAnswers(ANSWERS_KEPT)
    assert {path: served(server, path) for path in PATHS} == first  # built afresh
    epoch = json.loads(first[PATHS[0]][2])["epoch"]
    publish(server, account, "dir-bob")  # any change: the next epoch
    later = served(server, PATHS[0])
    assert later[0] == 200 and json.loads(later[2])["epoch"] > epoch


def test_the_kept_answers_are_bounded() -> None:
    kept = BuiltAnswers(2)
    for n in range(3):
        kept.keep(("uid", (str(n),), False, 1, 1), prepared_json(str(n)))
    assert kept.get(("uid", ("0",), False, 1, 1)) is None
    assert kept.get(("uid", ("2",), False, 1, 1)) is not None


def test_refused_names_are_refused_every_time(
        running: tuple[AccountServer, RunningServer]) -> None:
    """The labels made for lookups are remembered, refusals are not."""
    _, server = running
    for path in ("/v1/directory/keypair/dir%20alice/app", "/v1/directory/uid/no-at-sign"):
        first = served(server, path)
        assert first[0] == 400
        assert served(server, path) == first
