"""`python -m lab.cli` (and `torchrun -m lab.cli`): the same command line as `rlhf-lab`."""

import sys

from lab.cli import main

sys.exit(main())
