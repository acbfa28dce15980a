"""Key servers that get one rule of keypair continuity wrong (KP-6, KP-15, KP-16, KP-18):
each is caught by the one check that targets it, run alone and in this process (click's
test runner), like tests/test_conformance_contract.py.

The faults sit in the server's route module only: its `kp` is replaced by a copy of the
spec module with one function changed, so the runner, which imports the same spec
module, keeps the right rules.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from broken_contract import ContractVariant
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from test_conformance import statuses
from test_conformance_contract import run_against

import keyflows.reference.keypair_publication as routes
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import keypair_publication as kp
from keyflows.spec import xeddsa
from keyflows.spec.errors import BindingError, LinkError, SignatureError


def server_spec(monkeypatch: pytest.MonkeyPatch, **changed: Any) -> None:
    """The server's keypair-publication module with `changed` functions in place."""
    copy = ModuleType(kp.__name__)
    copy.__dict__.update(vars(kp))
    copy.__dict__.update(changed)
    monkeypatch.setattr(routes, "kp", copy)


def reset_skips_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepts a reset to any newer version, not only the next one (KP-16)."""
    def check_change(state: kp.StoredState, record: kp.Record) -> None:
        if record.change.type == kp.CHANGE_RESET and record.key_version > state.floor > 0:
            return
        kp.check_change(state, record)

    server_spec(monkeypatch, check_change=check_change)


def rotates_after_deletion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepts a rotation after a deletion, as if the deleted record were live (KP-18)."""
    def check_change(state: kp.StoredState, record: kp.Record) -> None:
        if state.live is None and record.change.type == kp.CHANGE_ROTATION \
                and record.key_version == state.floor + 1:
            return
        kp.check_change(state, record)

    server_spec(monkeypatch, check_change=check_change)


def unknown_change_is_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judges an unknown change type as a wrong state (422 link), not a malformed record
    (400 decode, KP-15)."""
    def validate_publication(obj: Any, *, user_id: str, client_id: str) -> kp.Record:
        change = obj.get("change") if isinstance(obj, dict) else None
        if isinstance(change, dict) and change.get("type") not in kp.CHANGE_TYPES:
            raise LinkError("unknown change type", requirement="KP-15")
        return kp.validate_publication(obj, user_id=user_id, client_id=client_id)

    server_spec(monkeypatch, validate_publication=validate_publication)


def plain_ed25519_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifies the binding signature with the plain cofactorless equation only, so a
    signature with a small-order R passes (KP-6 by the strict rule)."""
    def validate_publication(obj: Any, *, user_id: str, client_id: str) -> kp.Record:
        record = kp.parse_record(obj)
        if record.user_id != user_id or record.client_id != client_id:
            raise BindingError("another user or application", requirement="KP-7")
        message = kp.binding_message(user_id, client_id, record.key_version,
                                     record.public_keys, record.change.type)
        try:
            Ed25519PublicKey.from_public_bytes(record.public_keys.ed25519).verify(
                record.binding_signature, message)
        except InvalidSignature as exc:
            raise SignatureError("binding", requirement="KP-6") from exc
        xeddsa.verify(record.public_keys.x25519, kp.possession_message(
            user_id, client_id, record.key_version, record.public_keys, record.change.type),
            record.x25519_signature, requirement="KP-14")
        return record

    server_spec(monkeypatch, validate_publication=validate_publication)
    # The key directory's hook verifies the public view again before publishing it: the
    # broken server drops the strict rule there too (the runner's check does not read the
    # directory, so patching the shared module leaves the check as it is).
    strict_value_bytes = hd.value_bytes

    def value_bytes(label: hd.Label, value: object) -> bytes:
        if label.kind == hd.KIND_KEYPAIR and value is not None:
            return hd.keypair_value_bytes(kp.parse_record(value, public_only=True))
        return strict_value_bytes(label, value)

    monkeypatch.setattr(hd, "value_bytes", value_bytes)


VARIANTS = (
    ContractVariant("reset-skips-versions", "accepts a reset that skips versions",
                    "keypair-publication/reset/version-gap-refused",
                    patch=reset_skips_versions),
    ContractVariant("rotates-after-deletion", "accepts a rotation after a deletion",
                    "keypair-publication/rotation/after-deletion-refused",
                    patch=rotates_after_deletion),
    ContractVariant("unknown-change-is-link", "answers an unknown change type with 422",
                    "keypair-publication/change/unknown-type-refused",
                    patch=unknown_change_is_link),
    ContractVariant("plain-ed25519-binding", "verifies the binding signature cofactorless "
                    "without the strict R check", "keypair-publication/publish/small-order-r-"
                    "refused", patch=plain_ed25519_binding),
)
CHECKS = sorted(v.must_fail for v in VARIANTS)


def test_the_reference_server_passes_the_continuity_checks(tmp_path: Path) -> None:
    code, output, report = run_against(tmp_path, None, CHECKS)
    assert code == 0, output
    assert statuses(report) == {check: "passed" for check in CHECKS}


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_a_continuity_fault_is_caught(variant: ContractVariant, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert variant.patch is not None
    variant.patch(monkeypatch)
    code, output, report = run_against(tmp_path, variant, [variant.must_fail])
    assert code == 1, f"{variant.name} was not caught:\n{output}"
    assert statuses(report) == {variant.must_fail: "failed"}, output
