"""SQLite storage of the session-challenge flow: challenges and session digests.

A `Store` of its own (same database file, own connection and lock) so the flow's tables
sit apart from the keypair records. Every decision is the spec's
(`keyflows.spec.session_challenge`); this module only makes each one atomic: counting a
user's recent challenges and inserting a new one, and reading a challenge, applying one
transition of its state machine and issuing the session, each happen inside one
`BEGIN IMMEDIATE` transaction, so two concurrent answers cannot both win (SC-8).

Only digests of challenge tokens and of session tokens are stored (SC-12), so a reader of
the database files can neither answer a challenge nor present a session. Rows a decision
can no longer depend on (challenges older than one lifetime, expired sessions) are purged
as a side effect of writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from keyflows.reference.store import Store
from keyflows.spec import session_challenge as sc
from keyflows.spec.drbg import RandomSource
from keyflows.spec.errors import AuthzError

SESSIONS_TABLE = """CREATE TABLE IF NOT EXISTS sessions (
        digest BLOB PRIMARY KEY,
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID"""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS session_challenges (
        challenge_id BLOB PRIMARY KEY,
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        token BLOB NOT NULL,
        state TEXT NOT NULL,
        requester TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS session_challenges_by_user
        ON session_challenges (user_id, issued_at)""",
    SESSIONS_TABLE,
)


class AttemptLimitReached(Exception):
    """SC-2: the requester has had max_attempts challenges for the user within the last
    lifetime."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class NewChallenge:
    """What the caller knows before the store decides: whose key, which record, and the
    server's configured origin (SC-17)."""

    origin: str
    user_id: str
    client_id: str
    key_version: int
    recipient_public: bytes
    requester: str = ""  # who asks: attempts are counted per user and requester (SC-2)
    recipient_mlkem768: bytes | None = None  # the record's ML-KEM-768 key (SC-50)


class ChallengeStore(Store):
    @classmethod
    def open_challenges(cls, path: Path | str) -> ChallengeStore:
        store = cast(ChallengeStore, cls.open(path))
        # a database from before SC-2 counted requesters
        store.add_missing_columns([("session_challenges", "requester", "TEXT NOT NULL DEFAULT ''")])
        with store._write() as db:
            for statement in SCHEMA:
                db.execute(statement)
            columns = store.columns(db, "sessions")
            if "key_version" not in columns:
                # Sessions of an older schema are bound to no key_version (SC-16): end
                # them all (their holders answer a new challenge).
                db.execute("DROP TABLE sessions")
                db.execute(SESSIONS_TABLE)
        return store

    # --- steps 3 to 5 --------------------------------------------------------------------

    def issue(self, new: NewChallenge, *, now: int, limits: sc.Limits,
              random: RandomSource) -> sc.IssuedChallenge:
        """Check the attempt limit and store a fresh challenge, atomically."""
        window = limits.challenge_lifetime
        with self._write() as db:
            db.execute("DELETE FROM session_challenges WHERE user_id = ? AND issued_at <= ?",
                       (new.user_id, now - window))
            issued_at = [int(r[0]) for r in db.execute(
                "SELECT issued_at FROM session_challenges WHERE user_id = ? AND requester = ?",
                (new.user_id, new.requester)).fetchall()]
            try:
                sc.check_attempt_limit(issued_at, now=now, limits=limits)
            except AuthzError:
                in_window = [t for t in issued_at if now - window < t <= now]
                raise AttemptLimitReached(max(1, min(in_window) + window - now)) from None
            issued = sc.issue_challenge(origin=new.origin, user_id=new.user_id,
                                        client_id=new.client_id, key_version=new.key_version,
                                        recipient_public=new.recipient_public, now=now,
                                        lifetime=window, random=random,
                                        recipient_mlkem768=new.recipient_mlkem768)
            challenge = issued.challenge
            db.execute("INSERT INTO session_challenges (challenge_id, user_id, client_id,"
                       " key_version, issued_at, expires_at, token, state, requester)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (challenge.binding.challenge_id, new.user_id, new.client_id,
                        new.key_version, challenge.issued_at, challenge.binding.expires_at,
                        sc.challenge_token_digest(challenge.token), challenge.state.value,
                        new.requester))
            return issued

    # --- steps 8 and 9 -------------------------------------------------------------------

    def answer(self, challenge_id: bytes, *, origin: str, user_id: str, client_id: str,
               token: bytes, now: int, session_lifetime: int, random: RandomSource
               ) -> sc.IssuedSession | None:
        """One answer: the stored challenge takes one transition and, if the answer is
        accepted, a session is stored with it. None for every refusal (SC-11): unknown
        challenge, another user's or application's, replay, expired, wrong token."""
        with self._write() as db:
            row = db.execute("SELECT user_id, client_id, key_version, issued_at, expires_at,"
                             " token, state FROM session_challenges WHERE challenge_id = ?",
                             (challenge_id,)).fetchone()
            if row is None or (row[0], row[1]) != (user_id, client_id):
                return None
            challenge = sc.ServerChallenge(
                binding=sc.Binding(origin=origin, challenge_id=challenge_id, user_id=row[0],
                                   client_id=row[1], key_version=int(row[2]),
                                   expires_at=int(row[4])),
                token=bytes(row[5]), issued_at=int(row[3]), state=sc.ChallengeState(row[6]))
            # The row holds the token's digest: the spec compares the answer's digest to it.
            result = judge(challenge, sc.challenge_token_digest(token), now)
            if result.challenge.state is not challenge.state:
                db.execute("UPDATE session_challenges SET state = ? WHERE challenge_id = ?",
                           (result.challenge.state.value, challenge_id))
            if not result.accepted:
                return None
            issued = sc.issue_session(result.challenge, now=now, lifetime=session_lifetime,
                                      random=random)
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO sessions (digest, user_id, client_id, key_version,"
                       " expires_at) VALUES (?, ?, ?, ?, ?)",
                       (issued.session.digest, issued.session.user_id,
                        issued.session.client_id, issued.session.key_version,
                        issued.session.expires_at))
            return issued

    # --- step 10 --------------------------------------------------------------------------

    def find_session(self, digest: bytes) -> sc.Session | None:
        row = self._read(lambda db: db.execute(
            "SELECT user_id, client_id, key_version, expires_at FROM sessions"
            " WHERE digest = ?", (digest,)).fetchone())
        if row is None:
            return None
        return sc.Session(digest=digest, user_id=str(row[0]), client_id=str(row[1]),
                          key_version=int(row[2]), expires_at=int(row[3]))

    def challenge_state(self, challenge_id: bytes) -> str | None:
        """For tests and operators: the stored state of a challenge."""
        row = self._read(lambda db: db.execute(
            "SELECT state FROM session_challenges WHERE challenge_id = ?",
            (challenge_id,)).fetchone())
        return None if row is None else str(row[0])


def judge(challenge: sc.ServerChallenge, token: bytes, now: int) -> sc.AnswerResult:
    """Step 8: one transition of the spec's state machine (a seam for fault injection)."""
    return sc.answer_challenge(challenge, token, now=now)
