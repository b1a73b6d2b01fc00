# The two commands of the README: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench notebooks notebooks-execute clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: this CPU build is on the machine; an unpinned torch pulls a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo-rnn
	$(BIN)/scratchlm train --data human-numbers --model rnn --out runs/demo-rnn
	$(BIN)/scratchlm generate runs/demo-rnn --prompt "one thousand one . one thousand two ." --tokens 40
	$(BIN)/scratchlm score runs/demo-rnn "five thousand six hundred . five thousand six hundred one" \
		"five thousand six hundred . nine . twelve"

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m slow

# The learner's path: opens docs/notebooks/ in Jupyter (its extra installs on first use)
notebooks: $(STAMP)
	$(BIN)/pip install --quiet -e '.[notebooks]'
	$(BIN)/jupyter notebook --notebook-dir docs/notebooks

# Runs each notebook top to bottom and stores its outputs in it, one after another (runs go to docs/notebooks/runs/)
notebooks-execute: $(STAMP)
	$(BIN)/pip install --quiet -e '.[notebooks]'
	cd docs/notebooks && for notebook in *.ipynb; do ../../$(BIN)/jupyter-execute --inplace --timeout=900 "$$notebook" || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) runs bench/results/*.tmp
