"""`python -m flowpod_operator.cli ...`: the `flowpod` CLI without its console script.

Role: the same program as the `flowpod` console script, for environments where the script is
not on PATH (and for tests, which run it with the interpreter under test).
"""

from flowpod_operator.cli import main

if __name__ == "__main__":
    main()
