"""Shape checks for JSON wire objects, shared by every flow.

Every violation is a DecodeError citing API-6: a receiver refuses a body that is not an
object, lacks a required member, carries an unknown one, or has a member of the wrong type.
"""

from __future__ import annotations

from typing import Any

from keyflows.spec.errors import DecodeError


def members(obj: object, required: tuple[str, ...], where: str,
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return `obj` if it is an object with every required member and no unknown one."""
    if not isinstance(obj, dict):
        raise DecodeError(f"{where} must be a JSON object", requirement="API-6")
    missing = [k for k in required if k not in obj]
    if missing:
        raise DecodeError(f"{where} lacks {', '.join(missing)}", requirement="API-6")
    unknown = [k for k in obj if k not in required and k not in optional]
    if unknown:
        raise DecodeError(f"{where} has unknown member {unknown[0]}", requirement="API-6")
    return obj


def string(obj: dict[str, Any], key: str, where: str) -> str:
    """The member `key` of `obj`, which must be a JSON string."""
    value = obj[key]
    if not isinstance(value, str):
        raise DecodeError(f"{where}.{key} must be a string", requirement="API-6")
    return value


def integer(obj: dict[str, Any], key: str, where: str) -> int:
    """The member `key` of `obj`, which must be a JSON integer (not a boolean)."""
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{where}.{key} must be an integer", requirement="API-6")
    return value
