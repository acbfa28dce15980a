"""SQLite storage of the reference encrypted data vault (`keyflows edv`).

What it stores, per LOCK-34: each vault's configuration and the SHA-256 of its bearer
token (never the token), the encrypted documents as they were written, and their
blinded index attributes for queries and unique constraints. It can read none of the
documents. Documents are parsed back with the spec's parser on every read.
The SQL is portable to PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from keyflows.reference.store import Database, canonical_json, open_connection
from keyflows.spec import edv

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS edv_vaults (
        vault_id TEXT NOT NULL PRIMARY KEY,
        token_id TEXT NOT NULL,
        config TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS edv_documents (
        vault_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (vault_id, doc_id)
    )""",
    """CREATE TABLE IF NOT EXISTS edv_attributes (
        vault_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        index_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        is_unique INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS edv_attributes_lookup ON edv_attributes "
    "(vault_id, index_id, name, value)",
    "CREATE INDEX IF NOT EXISTS edv_attributes_doc ON edv_attributes (vault_id, doc_id)",
)


class Conflict(Exception):
    """The document's id, or one of its unique attributes, is taken in the vault."""


class VaultStore(Database):
    @classmethod
    def open(cls, path: Path) -> VaultStore:
        return cls(open_connection(path, SCHEMA))

    # --- vaults ---------------------------------------------------------------------------

    def add_vault(self, vault_id: str, token_id: bytes, config: edv.VaultConfig) -> None:
        with self.write() as db:
            db.execute("INSERT INTO edv_vaults (vault_id, token_id, config) VALUES (?, ?, ?)",
                       (vault_id, token_id.hex(), canonical_json(config.to_json())))

    def vault(self, vault_id: str) -> tuple[bytes, edv.VaultConfig] | None:
        """(token id, configuration) of a vault, or None."""
        row = self.read(lambda db: db.execute(
            "SELECT token_id, config FROM edv_vaults WHERE vault_id = ?",
            (vault_id,)).fetchone())
        if row is None:
            return None
        return bytes.fromhex(row[0]), edv.parse_vault_config(json.loads(row[1]))

    # --- documents ------------------------------------------------------------------------

    def add_document(self, vault_id: str, doc: edv.EncryptedDocument) -> None:
        """Store a new document; Conflict if its id or a unique attribute is taken."""
        with self.write() as db:
            if db.execute("SELECT 1 FROM edv_documents WHERE vault_id = ? AND doc_id = ?",
                          (vault_id, doc.id)).fetchone():
                raise Conflict(doc.id)
            self._check_unique(db, vault_id, doc)
            db.execute("INSERT INTO edv_documents (vault_id, doc_id, sequence, document)"
                       " VALUES (?, ?, ?, ?)",
                       (vault_id, doc.id, doc.sequence, canonical_json(doc.to_json())))
            self._index(db, vault_id, doc)

    def replace_document(self, vault_id: str, doc: edv.EncryptedDocument,
                         expected_sequence: int) -> bool:
        """Replace a document if its stored sequence is still `expected_sequence`."""
        with self.write() as db:
            db.execute("DELETE FROM edv_attributes WHERE vault_id = ? AND doc_id = ?",
                       (vault_id, doc.id))
            self._check_unique(db, vault_id, doc)
            changed = db.execute(
                "UPDATE edv_documents SET sequence = ?, document = ? WHERE vault_id = ? AND"
                " doc_id = ? AND sequence = ?", (doc.sequence, canonical_json(doc.to_json()),
                                                 vault_id, doc.id, expected_sequence)).rowcount
            if not changed:
                raise Conflict(doc.id)
            self._index(db, vault_id, doc)
            return True

    def document(self, vault_id: str, doc_id: str) -> edv.EncryptedDocument | None:
        row = self.read(lambda db: db.execute(
            "SELECT document FROM edv_documents WHERE vault_id = ? AND doc_id = ?",
            (vault_id, doc_id)).fetchone())
        return None if row is None else edv.parse_document(json.loads(row[0]))

    def delete_document(self, vault_id: str, doc_id: str) -> bool:
        with self.write() as db:
            db.execute("DELETE FROM edv_attributes WHERE vault_id = ? AND doc_id = ?",
                       (vault_id, doc_id))
            return bool(db.execute("DELETE FROM edv_documents WHERE vault_id = ? AND"
                                   " doc_id = ?", (vault_id, doc_id)).rowcount)

    def candidates(self, vault_id: str, index_id: str, names: Sequence[str]
                   ) -> list[edv.EncryptedDocument]:
        """Documents with an attribute of one of these names in this index; the spec's
        `matches` decides which of them answer the query."""
        if not names:
            return []
        marks = ", ".join("?" for _ in names)
        rows = self.read(lambda db: db.execute(
            "SELECT document FROM edv_documents WHERE vault_id = ? AND doc_id IN ("
            f"SELECT doc_id FROM edv_attributes WHERE vault_id = ? AND index_id = ? AND name"
            f" IN ({marks})) ORDER BY doc_id",
            (vault_id, vault_id, index_id, *names)).fetchall())
        return [edv.parse_document(json.loads(r[0])) for r in rows]

    @staticmethod
    def _check_unique(db: sqlite3.Connection, vault_id: str, doc: edv.EncryptedDocument
                      ) -> None:
        for index_id, name, value in edv.unique_keys(doc):
            if db.execute("SELECT 1 FROM edv_attributes WHERE vault_id = ? AND index_id = ?"
                          " AND name = ? AND value = ? AND is_unique = 1 AND doc_id <> ?",
                          (vault_id, index_id, name, value, doc.id)).fetchone():
                raise Conflict(f"{doc.id}: a unique attribute is taken")

    @staticmethod
    def _index(db: sqlite3.Connection, vault_id: str, doc: edv.EncryptedDocument) -> None:
        for entry in doc.indexed:
            for attribute in entry.attributes:
                db.execute("INSERT INTO edv_attributes (vault_id, doc_id, index_id, name,"
                           " value, is_unique) VALUES (?, ?, ?, ?, ?, ?)",
                           (vault_id, doc.id, entry.hmac_id, attribute.name, attribute.value,
                            1 if attribute.unique else 0))
