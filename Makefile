# The project's entry points; each sets up what is missing first (see .ci/run).
#
#   make demo    install what is missing, run the bundled experiment
#   make test    install what is missing, then ruff, mypy and pytest (what CI runs)
#   make check   ruff, mypy and pytest only
#   make format  format the code and notebooks in place

.PHONY: demo test check format

demo:
	.ci/run demo

test:
	.ci/run test

check:
	.ci/run check

format:
	python3 -m ruff check --fix .
	python3 -m ruff format .
