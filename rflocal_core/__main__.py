from __future__ import annotations

import sys

from rflocal_core.cli import main

sys.exit(main())
