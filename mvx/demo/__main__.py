"""python3 -m mvx.demo: the demonstration (mvx/demo/steps.py)."""

import sys

from mvx.demo.steps import main

sys.exit(main())
