"""`python -m scratchlm ...`, which is also what `torchrun -m scratchlm` runs."""

import sys

from scratchlm.cli import main

sys.exit(main())
