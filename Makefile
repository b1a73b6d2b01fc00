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

# The first minute: the n-gram baseline and an AWD-LSTM on the same split (their accuracies side by side), then
# the LSTM continues a count and ranks the right sentence far above a wrong one
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/scratchlm ladder --data human-numbers --models ngram,awd-lstm --out runs/demo
	$(BIN)/scratchlm generate runs/demo/awd-lstm --prompt "five thousand six hundred . five thousand six hundred one ." \
		--tokens 30
	$(BIN)/scratchlm score runs/demo/awd-lstm "five thousand six hundred . five thousand six hundred one" \
		"five thousand six hundred . nine . twelve"
	@echo "The scratchlm command is in $(BIN): 'source $(BIN)/activate' puts it on your PATH, as the README types it."

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
