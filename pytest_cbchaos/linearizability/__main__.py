import os
import sys

from .cli import main

code = main()
# exit without tearing the interpreter down: freeing a large search memo and the history takes
# tenths of a second past the verdict (docs/linearizability-design.md#budgets-and-verdicts)
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
