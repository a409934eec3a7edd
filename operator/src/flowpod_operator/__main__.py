"""`python -m flowpod_operator`: run the operator (see flowpod_operator.running.main)."""

import sys

from flowpod_operator import running

if __name__ == "__main__":
    sys.exit(running.main())
