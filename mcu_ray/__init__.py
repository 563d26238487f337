"""mcu_ray: mode connectivity in machine unlearning, as a resumable Ray grid."""
from mcu_ray.version import __version__

__all__ = ["__version__", "load"]


def load(storage: str, sweep: str, table: str = "results", tolerance=None):
    """One result table of ``<storage>/<sweep>`` as a pandas DataFrame: every row, every column.

    ``table``: results | barriers | references | pathway | examples, or verdicts (one row per curve, decided
    from the stored deviations with ``tolerance``: a number for losses or a mapping per metric
    family, over the sweep file's). Columns, units and directions: docs/tables.md.
    """
    from mcu_ray.tables import load as load_table  # pandas and the task registry only when asked

    return load_table(storage, sweep, table, tolerance)
