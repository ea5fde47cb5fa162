"""``python -m titans_memory.cli``: the ``titans`` command (torchrun launches it this way)."""

import sys

from titans_memory.cli import main

sys.exit(main())
