"""`python -m flowpod_operator.crds`: write crds/*.yaml from the models (`make crds`)."""

import sys

from flowpod_operator.crds import crdgen

if __name__ == "__main__":
    sys.exit(crdgen.main())
