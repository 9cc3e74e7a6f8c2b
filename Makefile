# The same as `python3 dev.py run | test | lint` (dev.py needs nothing but Python):
# `make run ARGS="--epochs 1"`, `make test ARGS='-m "not slow"'`.
.PHONY: run test lint
run:
	python3 dev.py run $(ARGS)
test:
	python3 dev.py test $(ARGS)
lint:
	python3 dev.py lint
