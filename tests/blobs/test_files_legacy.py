"""Files of the layout before ``~blob`` (key ``a/b`` at ``<root>/a/b``), as a store
of an earlier tether left them: an upgrade must keep every one readable."""

from __future__ import annotations

from pathlib import Path

from tether.blobs import FileBlobStore


def _legacy(root: Path, key: str, data: bytes) -> None:
    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_a_blob_of_the_old_layout_is_read_listed_and_deleted(tmp_path: Path) -> None:
    for key in ("runs/r1/out.json", "runs/r1/stages/s/1/files/report", "top"):
        _legacy(tmp_path, key, key.encode())
    store = FileBlobStore(tmp_path)
    assert await store.get("runs/r1/out.json") == b"runs/r1/out.json"
    assert await store.has("top") and not await store.has("runs/r1")
    assert await store.list("runs/r1/") == ["runs/r1/out.json", "runs/r1/stages/s/1/files/report"]
    assert await store.delete("top") and await store.get("top") is None
    assert await store.delete_prefix("runs/r1/") == 2
    assert await store.list() == [] and not (tmp_path / "runs" / "r1").exists()


async def test_a_put_replaces_a_blob_of_the_old_layout(tmp_path: Path) -> None:
    _legacy(tmp_path, "runs/r1/out.json", b"old")
    store = FileBlobStore(tmp_path)
    await store.put("runs/r1/out.json", b"new")
    assert await store.get("runs/r1/out.json") == b"new"
    assert await store.list() == ["runs/r1/out.json"]
    assert await store.delete("runs/r1/out.json") and await store.get("runs/r1/out.json") is None


async def test_an_old_blob_where_a_folder_must_be_is_moved_not_lost(tmp_path: Path) -> None:
    # the artifact 'report' of an earlier tether, then 'report/p1' written after upgrading
    files = "runs/r1/stages/s/1/files"
    _legacy(tmp_path, f"{files}/report", b"all")
    store = FileBlobStore(tmp_path)
    await store.put(f"{files}/report/p1", b"page")
    assert await store.get(f"{files}/report") == b"all"
    assert await store.get(f"{files}/report/p1") == b"page"
    assert await store.list(f"{files}/") == [f"{files}/report", f"{files}/report/p1"]
