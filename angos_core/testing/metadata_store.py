"""The contract every metadata store passes. Subclass it and override ``metadata_store``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from angos_core import layout
from angos_core.protocols import MetadataStore
from angos_core.testing.metadata_pages import ListPageContract

REPO = "v2/repositories/contract/repo/"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


class MetadataStoreContract(ListPageContract):
    """Behaviour every :class:`~angos_core.protocols.MetadataStore` must have.

    Override the ``metadata_store`` fixture to yield an opened, empty store and close it after.
    """

    @pytest.fixture
    async def metadata_store(self) -> AsyncIterator[MetadataStore]:
        raise NotImplementedError("override the metadata_store fixture: yield an opened store")
        yield  # pragma: no cover

    # ------------------------------------------------------------------ objects

    async def test_is_a_metadata_store(self, metadata_store: MetadataStore) -> None:
        assert isinstance(metadata_store, MetadataStore)
        assert isinstance(metadata_store.name, str) and metadata_store.name
        await metadata_store.health()

    async def test_absent_key(self, metadata_store: MetadataStore) -> None:
        assert await metadata_store.get(f"{REPO}missing/link") is None
        assert await metadata_store.delete(f"{REPO}missing/link") is False

    async def test_put_get(self, metadata_store: MetadataStore) -> None:
        key = layout.tag_current_key("contract/repo", "latest")
        await metadata_store.put(key, DIGEST_A.encode())
        assert await metadata_store.get(key) == DIGEST_A.encode()
        await metadata_store.put(key, DIGEST_B.encode())
        assert await metadata_store.get(key) == DIGEST_B.encode()

    async def test_values_are_bytes_as_given(self, metadata_store: MetadataStore) -> None:
        binary = bytes(range(256)) * 10
        await metadata_store.put(f"{REPO}binary", binary)
        await metadata_store.put(f"{REPO}empty", b"")
        assert await metadata_store.get(f"{REPO}binary") == binary
        assert await metadata_store.get(f"{REPO}empty") == b""  # empty, not absent
        manifest = b'{\n  "schemaVersion": 2,\t"x": "\xc3\xa9"  }\n'
        await metadata_store.put(f"{REPO}manifest", manifest)
        assert await metadata_store.get(f"{REPO}manifest") == manifest

    async def test_keys_of_the_layout(self, metadata_store: MetadataStore) -> None:
        keys = [
            layout.layer_link_key("a/b-c/d_e", DIGEST_A),
            layout.revision_link_key("a.b/c", "sha512:" + "c" * 128),
            layout.tag_current_key("a", "V1.2_-x"),
            layout.tag_index_key("a", "V1.2_-x", DIGEST_A),
            layout.referrer_link_key("a", DIGEST_A, DIGEST_B),
        ]
        for i, key in enumerate(keys):
            await metadata_store.put(key, str(i).encode())
        for i, key in enumerate(keys):
            assert await metadata_store.get(key) == str(i).encode()

    async def test_create_only_if_absent(self, metadata_store: MetadataStore) -> None:
        key = layout.layer_link_key("contract/repo", DIGEST_A)
        assert await metadata_store.create(key, b"first") is True
        assert await metadata_store.create(key, b"second") is False
        assert await metadata_store.get(key) == b"first"
        await metadata_store.put(key, b"replaced")
        assert await metadata_store.create(key, b"third") is False
        assert await metadata_store.get(key) == b"replaced"
        assert await metadata_store.delete(key) is True
        assert await metadata_store.create(key, b"again") is True
        assert await metadata_store.get(key) == b"again"

    async def test_concurrent_creates_have_one_winner(self, metadata_store: MetadataStore) -> None:
        key = f"{REPO}_manifests/tags/race/current/link"
        results = await asyncio.gather(
            *(metadata_store.create(key, f"writer {i}".encode()) for i in range(24))
        )
        assert results.count(True) == 1
        winner = results.index(True)
        assert await metadata_store.get(key) == f"writer {winner}".encode()

    async def test_put_replaces_atomically(self, metadata_store: MetadataStore) -> None:
        key = f"{REPO}_manifests/tags/atomic/current/link"
        values = [bytes([65 + i]) * 200_000 for i in range(4)]
        await metadata_store.put(key, values[0])
        torn: list[bytes] = []

        async def read_repeatedly() -> None:
            for _ in range(30):
                got = await metadata_store.get(key)
                if got not in values:
                    torn.append(got or b"<absent>")
                await asyncio.sleep(0)

        async def write_repeatedly(value: bytes) -> None:
            for _ in range(5):
                await metadata_store.put(key, value)

        await asyncio.gather(read_repeatedly(), *(write_repeatedly(v) for v in values))
        assert torn == []  # never absent, never a mix
        assert await metadata_store.get(key) in values

    async def test_delete(self, metadata_store: MetadataStore) -> None:
        key = layout.revision_link_key("contract/repo", DIGEST_A)
        sibling = layout.revision_link_key("contract/repo", DIGEST_B)
        await metadata_store.put(key, b"x")
        await metadata_store.put(sibling, b"y")
        assert await metadata_store.delete(key) is True
        assert await metadata_store.get(key) is None
        assert await metadata_store.delete(key) is False
        assert await metadata_store.get(sibling) == b"y"
        await metadata_store.put(key, b"back")
        assert await metadata_store.get(key) == b"back"

    # ------------------------------------------------------------------ listing

    async def test_list_children_objects_and_directories(
        self, metadata_store: MetadataStore
    ) -> None:
        base = f"{REPO}listing/"
        await metadata_store.put(f"{base}object", b"1")
        await metadata_store.put(f"{base}dir/deep/er/key", b"2")
        await metadata_store.put(f"{base}dir/other", b"3")
        await metadata_store.put(f"{base}both", b"4")
        await metadata_store.put(f"{base}both2/x", b"5")
        assert await metadata_store.list_children(base) == ["both", "both2", "dir", "object"]
        assert await metadata_store.list_children(f"{base}dir/") == ["deep", "other"]
        assert await metadata_store.list_children(f"{base}dir/deep/er/") == ["key"]

    async def test_list_children_sorts_by_bytes(self, metadata_store: MetadataStore) -> None:
        base = f"{REPO}_manifests/tags/"
        names = ["latest", "V1", "v1", "v1.0", "v1-0", "v1_0", "1.0", "_x", "Z", "a", "v10", "v2"]
        for name in names:
            await metadata_store.put(f"{base}{name}/current/link", DIGEST_A.encode())
        expected = sorted(names, key=lambda n: n.encode())
        assert await metadata_store.list_children(base) == expected

    async def test_list_children_pagination(self, metadata_store: MetadataStore) -> None:
        base = f"{REPO}page/"
        names = [f"n{i:03d}" for i in range(25)]
        for name in reversed(names):
            await metadata_store.put(f"{base}{name}", b"")
        assert await metadata_store.list_children(base, limit=5) == names[:5]
        assert await metadata_store.list_children(base, start_after="n009") == names[10:]
        assert await metadata_store.list_children(base, start_after="n009", limit=3) == names[10:13]
        # start_after need not be a present name.
        assert await metadata_store.list_children(base, start_after="n0095") == names[10:]
        assert await metadata_store.list_children(base, start_after="a") == names
        assert await metadata_store.list_children(base, start_after="n024") == []
        assert await metadata_store.list_children(base, limit=100) == names
        collected: list[str] = []
        last: str | None = None
        while page := await metadata_store.list_children(base, start_after=last, limit=7):
            collected.extend(page)
            last = page[-1]
        assert collected == names

    async def test_list_children_of_absent_directory(self, metadata_store: MetadataStore) -> None:
        assert await metadata_store.list_children(f"{REPO}nothing/here/") == []
        assert await metadata_store.list_children("v2/repositories/no-such-repo/") == []

    async def test_list_children_does_not_match_partial_names(
        self, metadata_store: MetadataStore
    ) -> None:
        await metadata_store.put(f"{REPO}abc/key", b"")
        await metadata_store.put(f"{REPO}abcdef/key", b"")
        assert await metadata_store.list_children(f"{REPO}abc/") == ["key"]

    async def test_deleted_keys_leave_no_children(self, metadata_store: MetadataStore) -> None:
        tags = layout.tags_prefix("contract/repo")
        await metadata_store.put(layout.tag_current_key("contract/repo", "keep"), b"k")
        await metadata_store.put(layout.tag_current_key("contract/repo", "gone"), b"g")
        await metadata_store.delete(layout.tag_current_key("contract/repo", "gone"))
        # A directory is a child only while it holds objects, as with prefixes on S3.
        assert await metadata_store.list_children(tags) == ["keep"]
        await metadata_store.delete(layout.tag_current_key("contract/repo", "keep"))
        assert await metadata_store.list_children(tags) == []

    async def test_repositories_list_as_children(self, metadata_store: MetadataStore) -> None:
        for name in ("zeta", "alpha/one", "alpha/two", "beta"):
            await metadata_store.put(layout.revision_link_key(name, DIGEST_A), b"")
        assert await metadata_store.list_children(layout.REPOSITORIES) == [
            "alpha",
            "beta",
            "zeta",
        ]
        assert await metadata_store.list_children(layout.repository_prefix("alpha")) == [
            "one",
            "two",
        ]

    # ------------------------------------------------------------------ delete_prefix

    async def test_delete_prefix(self, metadata_store: MetadataStore) -> None:
        tag = layout.tag_prefix("contract/repo", "old")
        await metadata_store.put(layout.tag_current_key("contract/repo", "old"), b"1")
        await metadata_store.put(layout.tag_index_key("contract/repo", "old", DIGEST_A), b"2")
        await metadata_store.put(layout.tag_index_key("contract/repo", "old", DIGEST_B), b"3")
        await metadata_store.put(layout.tag_current_key("contract/repo", "old2"), b"4")
        await metadata_store.put(layout.tag_current_key("contract/repo", "new"), b"5")
        await metadata_store.delete_prefix(tag)
        assert await metadata_store.get(layout.tag_current_key("contract/repo", "old")) is None
        assert await metadata_store.list_children(tag) == []
        tags = layout.tags_prefix("contract/repo")
        assert await metadata_store.list_children(tags) == ["new", "old2"]
        assert await metadata_store.get(layout.tag_current_key("contract/repo", "old2")) == b"4"
        # Absent prefixes are fine.
        await metadata_store.delete_prefix(tag)
        await metadata_store.delete_prefix(f"{REPO}never/existed/")
        # The keys can be written again afterwards.
        await metadata_store.put(layout.tag_current_key("contract/repo", "old"), b"6")
        assert await metadata_store.list_children(tags) == ["new", "old", "old2"]

    async def test_delete_prefix_of_a_whole_repository(self, metadata_store: MetadataStore) -> None:
        for name in ("doomed", "doomed-not", "kept"):
            await metadata_store.put(layout.layer_link_key(name, DIGEST_A), b"")
            await metadata_store.put(layout.tag_current_key(name, "t"), b"")
        await metadata_store.delete_prefix(layout.repository_prefix("doomed"))
        assert await metadata_store.list_children(layout.REPOSITORIES) == ["doomed-not", "kept"]
        assert await metadata_store.get(layout.layer_link_key("doomed-not", DIGEST_A)) == b""

    async def test_many_keys(self, metadata_store: MetadataStore) -> None:
        base = layout.layers_prefix("contract/many") + "sha256/"
        hexes = sorted(os.urandom(32).hex() for _ in range(60))
        await asyncio.gather(*(metadata_store.put(f"{base}{h}/link", h.encode()) for h in hexes))
        assert await metadata_store.list_children(base) == hexes
        values = await asyncio.gather(*(metadata_store.get(f"{base}{h}/link") for h in hexes))
        assert values == [h.encode() for h in hexes]
