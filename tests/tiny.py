"""`python tests/tiny.py setup`: the tiny model in models-tiny/ and tests/helpers/tiny_params.yaml over params.yaml.

Only the command line lives here, at the path CI (.github/workflows/ci.yml) and bench/gpu_check.sh call;
the code is tests/helpers/tiny.py. Run as a script, this file's folder (tests/) is first on sys.path.
"""

import sys

from helpers.tiny import main

if __name__ == "__main__":
    main(sys.argv[1:])
