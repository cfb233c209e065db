"""Gradio's upload folder stays under its byte cap: oldest files first, young files and the app's folder kept."""

from __future__ import annotations

import os
import time

from demo.upload_cap import UploadFolderCap


def put(folder, name: str, size: int, age_s: float, now: float):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_oldest_files_go_until_under_the_cap(tmp_path):
    now = time.time()
    old = [put(tmp_path, f"hash{i}/photo{i}.jpg", 1000, 3600 - i, now) for i in range(5)]  # hash0 the oldest
    young = put(tmp_path, "hashY/new.jpg", 1000, 10, now)
    mine = put(tmp_path, "matting-app-1/s/preview.png", 5000, 7200, now)
    cap = UploadFolderCap(tmp_path, max_bytes=3500, min_age_s=300, keep=tmp_path / "matting-app-1")
    assert cap.sweep(now) == 3000           # 6000 bytes outside the app's folder -> 3000 left
    assert [p.exists() for p in old] == [False, False, False, True, True]
    assert not (tmp_path / "hash0").exists()  # emptied hash folders go too
    assert young.exists() and mine.exists()  # too young; the app's own (separately bounded) folder
    assert cap.sweep(now) == 0               # under the cap now: nothing more
    assert cap.removed_bytes == 3000


def test_young_files_are_kept_even_over_the_cap(tmp_path):
    now = time.time()
    files = [put(tmp_path, f"h{i}/f.jpg", 1000, 60, now) for i in range(4)]
    assert UploadFolderCap(tmp_path, max_bytes=2000, min_age_s=300).sweep(now) == 0  # 2x the cap: not urgent
    assert all(p.exists() for p in files)
    fresh = [put(tmp_path, f"n{i}/f.jpg", 1000, 5, now) for i in range(4)]
    assert UploadFolderCap(tmp_path, max_bytes=100, min_age_s=300, urgent_min_age_s=30).sweep(now) == 4000
    assert not any(p.exists() for p in files) and all(p.exists() for p in fresh)  # the 5 s old ones stay


def test_far_over_the_cap_the_age_rule_shrinks(tmp_path):
    """A flood of uploads (a full queue does not slow them) is cut back to the hard cap within a minute."""
    now = time.time()
    older = [put(tmp_path, f"o{i}/f.jpg", 1000, 120 - i, now) for i in range(6)]  # 2 min old: under min_age
    newest = put(tmp_path, "new/f.jpg", 1000, 10, now)
    cap = UploadFolderCap(tmp_path, max_bytes=1500, min_age_s=300, hard_factor=2.0, urgent_min_age_s=30)
    assert cap.sweep(now) == 4000            # 7000 bytes -> down to the hard cap (3000), oldest first
    assert [p.exists() for p in older] == [False, False, False, False, True, True] and newest.exists()
    assert cap.sweep(now) == 0               # at the hard cap: the rest waits for min_age


def test_links_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = put(outside, "keep.txt", 5000, 7200, time.time())
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "link").symlink_to(outside, target_is_directory=True)
    UploadFolderCap(folder, max_bytes=0, min_age_s=0).sweep()
    assert victim.exists()


def test_the_app_starts_one_with_the_configured_cap(monkeypatch, capsys):
    from demo.ui import upload_folder_cap

    monkeypatch.setenv("MATTING_UPLOAD_FOLDER_MB", "512")
    assert upload_folder_cap() == 512 << 20
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MATTING_UPLOAD_FOLDER_MB", "nonsense")
    assert upload_folder_cap() == 2 << 30
    assert "MATTING_UPLOAD_FOLDER_MB='nonsense'" in capsys.readouterr().err   # said, not silently ignored
