"""``Idempotency-Key``: a repeated POST with the same key (same user, same route) returns the first answer.

The key row is inserted in the same transaction as what the request creates, under a unique constraint
``(user_id, scope, key)``: of concurrent requests exactly one commits; the others hit the constraint,
roll back everything they did, and answer with the stored response of the one that won.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from medannot.server.models import IdempotencyKey

MAX_KEY_LENGTH = 200


def stored(session: Session, user_id: int, scope: str, key: str) -> IdempotencyKey | None:
    """The stored answer for a key, or None."""
    return session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.user_id == user_id, IdempotencyKey.scope == scope, IdempotencyKey.key == key))


def reserve(session: Session, user_id: int, scope: str, key: str) -> IdempotencyKey:
    """Insert the key row (flushes: raises IntegrityError at once on PostgreSQL if another request holds it)."""
    row = IdempotencyKey(user_id=user_id, scope=scope, key=key[:MAX_KEY_LENGTH], status_code=0, response={})
    session.add(row)
    session.flush()
    return row
