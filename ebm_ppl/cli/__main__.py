"""``python -m ebm_ppl.cli``: the ``ebm-ppl`` command."""

import sys

from ebm_ppl.cli import main

sys.exit(main())
