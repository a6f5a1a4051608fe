"""Metadata store ``s3``: small objects, one S3 object per key, under ``key_prefix``.

S3 PUTs are atomic (readers see the old or the new object), and ``create`` is a conditional
PUT (``If-None-Match: *``), which AWS S3, MinIO and moto honour. On a service that ignores
the header a racing create could succeed twice; core only creates keys that name their
content (links, manifest bytes), so both write the same bytes and nothing is lost.
"""

from __future__ import annotations

from angos_core.protocols import Children
from angos_s3.client import Missing, PreconditionFailed, S3Backend
from angos_s3.listing import list_children, list_page


class S3MetadataStore(S3Backend):
    async def get(self, key: str) -> bytes | None:
        try:
            resp = await self.s3.call("get_object", key)
            async with resp["Body"] as body:
                data: bytes = await body.read()
        except Missing:
            return None
        return data

    async def put(self, key: str, data: bytes) -> None:
        await self.s3.call("put_object", key, Body=data)

    async def create(self, key: str, data: bytes) -> bool:
        try:
            await self.s3.call("put_object", key, Body=data, IfNoneMatch="*")
        except PreconditionFailed as exc:
            # A retried create that fails its condition may have lost the answer of its own
            # successful first attempt: the object holding our bytes says so.
            return exc.retried and await self.get(key) == data
        return True

    async def delete(self, key: str) -> bool:
        try:
            await self.s3.call("head_object", key)
        except Missing:
            return False
        await self.s3.call("delete_object", key)
        return True

    async def delete_prefix(self, prefix: str) -> None:
        await self.s3.delete_prefix(prefix)

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await list_children(
            self.s3.pages(prefix, delimiter="/", start_after=_start_key(prefix, start_after)),
            self.s3.key(prefix),
            start_after,
            limit,
        )

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        return await list_page(
            self.s3.pages(prefix, delimiter="/", start_after=_start_key(prefix, start_after)),
            self.s3.key(prefix),
            start_after,
            limit,
        )


def _start_key(prefix: str, start_after: str | None) -> str | None:
    # Every child named above start_after lists above this key (see angos_s3.listing).
    return None if start_after is None else prefix + start_after
