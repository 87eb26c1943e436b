# One command for each job; both set up a fresh machine first (scripts/setup is idempotent).
.PHONY: setup test test-envs chaos bench

setup:
	./scripts/setup

test: setup
	.venv/bin/python -m pytest -n 3 --dist worksteal -p no:cacheprovider

test-envs: setup
	.venv/bin/nox -s purgatory

chaos: setup
	.venv/bin/cbchaos run scenarios/ --report cbchaos-report

bench: setup
	.venv/bin/python bench/run_all.py
