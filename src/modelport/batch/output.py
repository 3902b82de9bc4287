"""The lines of a batch's output and error files, in OpenAI's format, and the API's objects.

An answered line (any HTTP status) carries ``response: {status_code, request_id, body}``;
a line that never reached a model (refused when the batch was created, or left when it
expired) carries ``error: {code, message}`` instead.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import orjson

from modelport.store.batches import BatchRow, FileRow


def answered(custom_id: str, request_id: str, status: int, body: bytes) -> str:
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = body.decode("utf-8", "replace")
    return orjson.dumps({
        "id": "batch_req_" + secrets.token_hex(12), "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": parsed},
        "error": None,
    }).decode()


def refused(custom_id: str, code: str, message: str) -> str:
    return orjson.dumps({
        "id": "batch_req_" + secrets.token_hex(12), "custom_id": custom_id,
        "response": None, "error": {"code": code, "message": message},
    }).decode()


def expired(custom_id: str) -> str:
    return refused(custom_id, "batch_expired",
                   "This line was not run before the batch's completion window ended.")


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def file_object(row: FileRow) -> dict[str, Any]:
    return {"id": row.id, "object": "file", "bytes": row.bytes,
            "created_at": _epoch(row.created_at), "filename": row.filename,
            "purpose": row.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


def batch_object(row: BatchRow) -> dict[str, Any]:
    counts = row.counts
    return {
        "id": row.id, "object": "batch", "endpoint": row.endpoint, "errors": None,
        "input_file_id": row.input_file_id, "completion_window": row.completion_window,
        "status": row.status, "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id, "created_at": _epoch(row.created_at),
        "in_progress_at": _epoch(row.in_progress_at), "expires_at": _epoch(row.expires_at),
        "finalizing_at": _epoch(row.finalizing_at), "completed_at": _epoch(row.completed_at),
        "failed_at": None, "expired_at": _epoch(row.expired_at),
        "cancelling_at": _epoch(row.cancelling_at), "cancelled_at": _epoch(row.cancelled_at),
        "request_counts": {
            "total": row.total,
            "completed": counts.completed if counts else 0,
            "failed": counts.failed if counts else 0,
        },
        "metadata": None if row.metadata is None else orjson.loads(row.metadata),
        "paused_reason": row.paused_reason,
    }


def job_object(row: BatchRow, kept: str | None) -> dict[str, Any]:
    """A queued request as its caller polls it (``kept``: its output line, once done)."""
    status = "queued" if row.status == "in_progress" else row.status
    if kept is not None:
        status = "completed"
    return {"id": row.id, "object": "job", "status": status, "endpoint": row.endpoint,
            "created_at": _epoch(row.created_at), "expires_at": _epoch(row.expires_at)}


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}
