"""``python -m mcu_ray COMMAND ...``: the ``mcu-ray`` console script without installing it."""
import sys

from mcu_ray.cli import main

sys.exit(main())
