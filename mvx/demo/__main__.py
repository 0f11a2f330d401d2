"""python3 -m mvx.demo"""

import sys

from mvx.demo import main

sys.exit(main())
