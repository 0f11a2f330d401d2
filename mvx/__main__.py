"""`python3 -m mvx`: the mvx command."""

import sys

from mvx.cli import main

sys.exit(main())
