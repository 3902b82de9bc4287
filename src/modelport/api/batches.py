"""OpenAI's Files and Batches APIs: ``/v1/files`` and ``/v1/batches``.

An input file arrives as ``multipart/form-data`` (``purpose=batch``, ``file=...``) and is
spooled to a temporary file as it arrives (memory stays bounded whatever its size, up to
``batch.max_file_bytes``), then checked line by line and kept whole or not at all. A file's
content streams back a page at a time. Every call needs the key that owns what it names
(in open mode, no key); another key's file or batch is 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import parse_qs, quote

import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Message, Receive, Scope, Send
from modelport.api.body import header, read_body
from modelport.api.responses import send_bytes, send_json
from modelport.api.services import Services, services_of
from modelport.batch.output import batch_object, file_object, job_object, page
from modelport.batch.service import BatchService
from modelport.errors import (
    ClientDisconnected,
    Forbidden,
    JobExpired,
    NotFound,
    PayloadTooLarge,
    RequestError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from modelport.policy.keys import Principal
from modelport.protocol.json_body import load_object

_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the other fields, beyond the file
_MAX_PAGE = 10_000


def _caller(scope: Scope) -> tuple[Services, BatchService, Principal | None, str | None]:
    services = services_of(scope)
    principal = services.access.authenticate(header(scope, b"authorization"))
    if principal is not None and principal.role != "caller":
        raise Forbidden("This key may not call models, so it may not run batches.")
    if services.batches is None:
        raise ServiceUnavailable("Batches are not available on this server.")
    return services, services.batches, principal, \
        principal.key_id if principal is not None else None


def _limit(scope: Scope, default: int) -> int:
    text = _query(scope, "limit")
    if text is None:
        return default
    if not text.isdecimal() or not 1 <= int(text) <= _MAX_PAGE:
        raise RequestError(f"limit must be a number from 1 to {_MAX_PAGE}.", param="limit")
    return int(text)


def _query(scope: Scope, name: str) -> str | None:
    values: list[str] | None = parse_qs(
        scope.get("query_string", b"").decode("latin-1")).get(name)
    if not values:
        return None
    if not values[0].isprintable():
        raise RequestError(f"{name} must be printable text.", param=name)
    return values[0]


def _id(scope: Scope, name: str) -> str:
    """A path's id; one no store could hold is simply not there."""
    value: str = scope["path_params"][name]
    if not value.isprintable() or len(value) > 64:
        raise NotFound(f"No such {name.removesuffix('_id')}.", param=name)
    return value


def _disposition(filename: str) -> bytes:
    """``attachment`` with the file's name as uploaded, quoted safely (RFC 6266)."""
    plain = "".join(c for c in filename if c.isascii() and c.isprintable() and c not in '"\\')
    return f'attachment; filename="{plain or "file.jsonl"}"; ' \
           f"filename*=UTF-8''{quote(filename, safe='')}".encode()


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive``, refusing a body past ``limit`` bytes with 413."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise PayloadTooLarge(f"The file is larger than the limit of {limit} bytes "
                                  "(batch.max_file_bytes).")
        return message

    return bounded


async def upload_file(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    content_type = (header(scope, b"content-type") or b"").decode("latin-1")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("Upload a file as multipart/form-data, with the fields "
                                   "purpose and file.")
    limit = batches.settings.max_file_bytes
    request = Request(scope, _bounded(receive, limit + _FORM_OVERHEAD))
    try:
        async with request.form(max_files=1, max_fields=8) as form:
            upload, purpose = form.get("file"), form.get("purpose")
            if not isinstance(upload, UploadFile):
                raise RequestError("The form needs a file field.", param="file")
            if not isinstance(purpose, str):
                raise RequestError("The form needs a purpose field.", param="purpose")
            size = upload.size or 0
            if size > limit:
                raise PayloadTooLarge(f"The file is larger than the limit of {limit} bytes "
                                      "(batch.max_file_bytes).")
            row = await batches.upload(key_id, purpose, upload.filename or "", upload.file,
                                       size)
    except ClientDisconnect:
        raise ClientDisconnected("The client closed the connection.") from None
    except HTTPException as exc:  # the form could not be parsed
        raise RequestError(f"The form could not be read: {exc.detail}.") from None
    await send_json(send, file_object(row))


async def list_files(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    limit = _limit(scope, 100)
    rows = await asyncio.to_thread(batches.store.files, key_id,
                                   purpose=_query(scope, "purpose"), limit=limit + 1,
                                   after=_query(scope, "after"))
    await send_json(send, page([file_object(r) for r in rows[:limit]], len(rows) > limit))


async def get_file(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    await send_json(send, file_object(await batches.file(key_id,
                                                         _id(scope, "file_id"))))


async def delete_file(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    row = await batches.file(key_id, _id(scope, "file_id"))
    await asyncio.to_thread(batches.store.delete_file, row.id)
    await send_json(send, {"id": row.id, "object": "file", "deleted": True})


async def file_content(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    row = await batches.file(key_id, _id(scope, "file_id"))
    pages: Iterator[bytes] = batches.content(row)
    first = await asyncio.to_thread(next, pages, b"")
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/jsonl"),
        (b"content-disposition", _disposition(row.filename))]})
    chunk = first
    while chunk:
        following = await asyncio.to_thread(next, pages, b"")
        await send({"type": "http.response.body", "body": chunk, "more_body": bool(following)})
        chunk = following
    if not first:
        await send({"type": "http.response.body", "body": b""})


async def create_batch(scope: Scope, receive: Receive, send: Send) -> None:
    services, batches, principal, _ = _caller(scope)
    body = load_object(await read_body(scope, receive, services.settings.server.max_body_bytes))
    row = await batches.create(principal, body, services.routes)
    await send_json(send, batch_object(await batches.batch(row.key_id, row.id)))


async def list_batches(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    limit = _limit(scope, 20)
    rows = await asyncio.to_thread(batches.store.batches, key_id, limit=limit + 1,
                                   after=_query(scope, "after"))
    await send_json(send, page([batch_object(r) for r in rows[:limit]], len(rows) > limit))


async def get_batch(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    await send_json(send, batch_object(await batches.batch(key_id,
                                                           _id(scope, "batch_id"))))


async def cancel_batch(scope: Scope, receive: Receive, send: Send) -> None:
    _, batches, _, key_id = _caller(scope)
    await send_json(send, batch_object(await batches.cancel(key_id,
                                                            _id(scope, "batch_id"))))


async def get_job(scope: Scope, receive: Receive, send: Send) -> None:
    """A queued request: 202 while it waits or runs; then its answer, with the status it
    was answered with; 410 when its window ended before it ran."""
    _, batches, _, key_id = _caller(scope)
    row, kept = await batches.job(key_id, _id(scope, "job_id"))
    if kept is None:
        await send_bytes(send, 202, orjson.dumps(job_object(row, None)), "application/json",
                         [(b"retry-after", b"1")])
        return
    line = orjson.loads(kept)
    response, error = line["response"], line["error"]
    headers = [(b"x-modelport-job", row.id.encode())]
    if response is None:
        raise JobExpired(error["message"])
    headers.append((b"x-modelport-job-request-id", response["request_id"].encode()))
    await send_bytes(send, response["status_code"], orjson.dumps(response["body"]),
                     "application/json", headers)


def routes() -> list[Route]:
    return [
        Route("/v1/files", AsgiEndpoint(upload_file), methods=["POST"]),
        Route("/v1/files", AsgiEndpoint(list_files), methods=["GET"]),
        Route("/v1/files/{file_id}", AsgiEndpoint(get_file), methods=["GET"]),
        Route("/v1/files/{file_id}", AsgiEndpoint(delete_file), methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", AsgiEndpoint(file_content), methods=["GET"]),
        Route("/v1/batches", AsgiEndpoint(create_batch), methods=["POST"]),
        Route("/v1/batches", AsgiEndpoint(list_batches), methods=["GET"]),
        Route("/v1/batches/{batch_id}", AsgiEndpoint(get_batch), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", AsgiEndpoint(cancel_batch), methods=["POST"]),
        Route("/v1/jobs/{job_id}", AsgiEndpoint(get_job), methods=["GET"]),
    ]
