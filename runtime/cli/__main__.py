"""`python -m crisislens.runtime.cli` = the `crisislens` command."""

import sys

from crisislens.runtime.cli.parser import main

sys.exit(main())
