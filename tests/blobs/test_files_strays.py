"""A file store's folder holding files that are not blobs (an editor's backup, a file
copied in by hand): they are no keys, so listing skips them and deleting the folder
removes them with it."""

from __future__ import annotations

from pathlib import Path

from tether.blobs import FileBlobStore


async def test_files_that_are_no_keys_are_not_listed_and_go_with_their_folder(
    tmp_path: Path,
) -> None:
    # before: list() returned "runs/r1/notes.txt~", which get() and delete() refuse as
    # no key, so delete_prefix("runs/r1/") (deleting a run) failed and kept every file
    store = FileBlobStore(tmp_path)
    await store.put("runs/r1/out.json", b"{}")
    await store.put("runs/r2/out.json", b"[]")
    run = tmp_path / "runs" / "r1"
    (run / "notes.txt~").write_bytes(b"backup")
    (run / "my copy.json").write_bytes(b"copied by hand")
    (run / "odd dir").mkdir()
    (run / "odd dir" / "x.json").write_bytes(b"x")

    assert await store.list("runs/r1/") == ["runs/r1/out.json"]
    assert await store.list() == ["runs/r1/out.json", "runs/r2/out.json"]
    for key in await store.list():
        assert await store.get(key) is not None  # every key listed reads back
    assert await store.delete_prefix("runs/r1/") == 1
    assert not run.exists()
    assert await store.list() == ["runs/r2/out.json"]
