"""``python -m pytest_cbchaos.linearizability FILE...``: ``cbchaos check`` as its own process."""

from .cli import exit_after_verdict, main

exit_after_verdict(main())
