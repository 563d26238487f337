"""What both commands (sweep, search) do before any work: refuse an unwritable storage, exit 2 with error lines."""
import pytest

from mcu_ray.driver import check_storage, fail, fail_all
from mcu_ray.errors import SpecError


def test_fail_prints_one_error_line_and_exits_with_its_code(capsys):
    with pytest.raises(SystemExit) as exit_:
        fail("storage: got x; cannot be written")
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: storage: got x; cannot be written\n"
    with pytest.raises(SystemExit) as exit_:
        fail_all(["a: one", "b: two"], code=1)
    assert exit_.value.code == 1 and capsys.readouterr().err == "error: a: one\nerror: b: two\n"


def test_a_storage_that_cannot_be_written_is_refused(tmp_path):
    check_storage(str(tmp_path / "runs"))  # created and written
    assert (tmp_path / "runs" / ".write_check").read_bytes() == b"ok"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpecError) as caught:
        check_storage(str(blocker / "runs"))
    assert caught.value.path == "storage" and "cannot be written" in caught.value.allowed
