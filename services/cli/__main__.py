"""`python -m services.cli`: the `yingji` command."""

import sys

from services.cli.main import main

sys.exit(main())
