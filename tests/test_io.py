"""Atomic writes: whole files only, with the permissions a plain write would give."""

import os
import stat

import pytest

from icl_probe.io import read_json, write_json, write_text


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_results_get_the_mode_of_a_plain_write(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        written = write_json(tmp_path / "r" / "result.json", {"a": 1})
    finally:
        os.umask(old)
    mode = stat.S_IMODE(written.stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_earlier_result_and_leaves_no_temporary(tmp_path):
    path = write_json(tmp_path / "result.json", {"good": True})

    class Boom(Exception):
        pass

    def failing(p):
        p.write_text("half")
        raise Boom

    from icl_probe.io import atomic_write

    with pytest.raises(Boom):
        atomic_write(path, failing)
    assert read_json(path) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert write_text(tmp_path / "t.txt", "hello").read_text() == "hello"
