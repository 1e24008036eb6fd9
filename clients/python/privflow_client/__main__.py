"""``python -m privflow_client``: the ``privflow-client`` command line."""

import sys

from privflow_client._cli import main

sys.exit(main())
