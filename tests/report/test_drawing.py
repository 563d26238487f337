"""Figures drawn side by side: each drawing called once with its path and arguments, in this process or in
spawned workers; a drawing's size (what orders them, largest first) is its frames' rows; one that fails raises."""
import os

import pandas as pd
import pytest

from mcu_ray.report.drawing import Drawing, draw_all


def write_order(path: str, frame: pd.DataFrame, note: str) -> None:
    """A stand-in figure: the file holds the note, the frame's length and the process that wrote it."""
    with open(path, "w") as out:
        out.write(f"{note} {len(frame)} {os.getpid()}")


def fail(path: str) -> None:
    raise RuntimeError(f"cannot draw {path}")


def test_size_counts_the_rows_of_the_frames_it_draws():
    drawing = Drawing(write_order, "x", (pd.DataFrame({"a": range(3)}), "note", pd.DataFrame({"b": range(4)})))
    assert drawing.size == 7


def test_in_this_process_each_drawing_is_called_once(tmp_path):
    drawings = [Drawing(write_order, str(tmp_path / f"{i}.txt"), (pd.DataFrame({"a": range(i)}), f"n{i}"))
                for i in range(3)]
    draw_all(drawings, workers=1)
    assert [(tmp_path / f"{i}.txt").read_text().split()[:2] for i in range(3)] == [["n0", "0"], ["n1", "1"],
                                                                                   ["n2", "2"]]
    assert {(tmp_path / f"{i}.txt").read_text().split()[2] for i in range(3)} == {str(os.getpid())}


def test_spawned_workers_draw_and_pass_failures_on(tmp_path):
    drawings = [Drawing(write_order, str(tmp_path / f"{i}.txt"), (pd.DataFrame({"a": range(i)}), f"n{i}"))
                for i in range(3)]
    with pytest.raises(RuntimeError, match="cannot draw"):
        draw_all([Drawing(fail, str(tmp_path / "bad.png"), ()), *drawings], workers=2)
    pids = {(tmp_path / f"{i}.txt").read_text().split()[2] for i in range(3)}
    assert str(os.getpid()) not in pids  # drawn in the workers, the failure notwithstanding
    assert [(tmp_path / f"{i}.txt").read_text().split()[1] for i in range(3)] == ["0", "1", "2"]
