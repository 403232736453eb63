"""Files written through atomic_path are whole or absent, and never replace a good file with a torn one."""

import pytest

from dmcodec_cli.atomic import atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "data.txt"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.txt"]
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
