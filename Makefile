# zooport: every target installs what it needs first (a fresh clone needs nothing else).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zooport-installed
MODEL ?=
# `make convert` / `make verify` without MODEL: the PP-OCR models shipped in the installed wheel
OCR_MODELS := ppocrv4_det ppocrv4_rec ppocr_mobile_v2_cls

.PHONY: setup convert verify ocr eval explain digits test parity parity-full fuzz bench readme reports chromium clean

setup: $(STAMP)

# Re-runs only when the pins or the package metadata change; a second `make setup` is a no-op.
$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "setuptools==80.9.0" wheel
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# make convert MODEL=... [WEIGHTS=file | INIT=random [SEED=n]] [OUT=dir] [FORMAT=pth]
# make convert (no MODEL): the three PP-OCR models from the installed wheel, then their parity summary
convert: setup
ifeq ($(MODEL),)
	for m in $(OCR_MODELS); do $(BIN)/zooport convert $$m $(if $(OUT),--out $(OUT)) || exit 1; done
	$(BIN)/zooport verify $(OCR_MODELS)
else
	$(BIN)/zooport convert $(MODEL) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(INIT),--init $(INIT)) \
		$(if $(SEED),--seed $(SEED)) $(if $(OUT),--out $(OUT)) $(if $(FORMAT),--format $(FORMAT))
endif

verify: setup
	$(BIN)/zooport verify $(or $(MODEL),$(OCR_MODELS)) $(if $(WEIGHTS),--weights $(WEIGHTS)) \
		$(if $(INIT),--init $(INIT)) $(if $(SEED),--seed $(SEED))

# make ocr IMAGE=photo.jpg: the converted PP-OCR pipeline, torch only
ocr: setup
	$(BIN)/zooport ocr $(IMAGE)

# make eval MODEL=... DATA=path [PREPROCESS=mxnet,cv2-exact,pil,torchvision] [FRAMEWORK=torch,mxnet]
#   [NMS=..] [WEIGHTS=file | INIT=random] [LIMIT=n] [JSON=file] [NPROC=n: sharded with torchrun]
eval: setup
	$(if $(NPROC),$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m parity.cli,$(BIN)/zooport) eval $(MODEL) \
		--data $(DATA) $(if $(PREPROCESS),--preprocess $(PREPROCESS)) $(if $(FRAMEWORK),--framework $(FRAMEWORK)) \
		$(if $(NMS),--nms $(NMS)) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(INIT),--init $(INIT)) \
		$(if $(LIMIT),--limit $(LIMIT)) $(if $(JSON),--json $(JSON))

# make explain MODEL=... DATA=path [TO=pil] [NMS=torchvision] [WEIGHTS=file | INIT=random] [LIMIT=n]
explain: setup
	$(BIN)/zooport explain $(MODEL) --data $(DATA) $(if $(TO),--to $(TO)) $(if $(NMS),--nms $(NMS)) \
		$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(INIT),--init $(INIT)) $(if $(LIMIT),--limit $(LIMIT))

# the digits checkpoint of parity/tests/test_digits.py (cached in weights/digits/; ~1 min when absent)
digits: setup
	$(BIN)/python -m parity.digits

# CI: unit tests and the parity suite, slow sweeps excluded.
# ZOOPORT_REQUIRE_ORACLES: a missing oracle (mxnet, gluoncv, paddle, paddleclas, the PP-OCR wheel) is an error here, never a silent skip.
# Two processes: MXNet's and Paddle's allocators keep what the unit tests took, and the parity suite's
# Faster R-CNN peak on top of it exceeded 24 GiB in one process (OOM-killed on a fresh clone).
test: setup chromium
	ZOOPORT_REQUIRE_ORACLES=1 $(BIN)/python -m pytest tests -m "not slow" --durations=15
	ZOOPORT_REQUIRE_ORACLES=1 $(BIN)/python -m pytest parity -m "not slow" --durations=40

parity: setup
	ZOOPORT_REQUIRE_ORACLES=1 $(BIN)/python -m pytest parity -m "not slow"

parity-full: setup
	ZOOPORT_REQUIRE_ORACLES=1 $(BIN)/python -m pytest tests parity

# make fuzz [FUZZ_EXAMPLES=n]: every reader on n mutated and n generated inputs per format (default
# 10,000; `make test` runs 300 of each); writes reports/fuzz.json and each format's slowest input
fuzz: setup
	ZOOPORT_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),10000) ZOOPORT_FUZZ_REPORT=reports/fuzz.json \
		$(BIN)/python -m pytest tests/test_fuzz.py -q -s -p no:cacheprovider

bench: setup
	$(BIN)/python -m parity.bench

# README's supported-model table, from the registry and reports/parity/*.json of the last parity run
readme: setup
	$(BIN)/python -m parity.summary

# make reports [MODELS="a b ..." | MODELS=all] [OUT=dir]: OUT/MODEL.{json,md,html} per model (seeded
# weights where no published file is on disk, labelled so in each card; never downloads), then
# OUT/index.md, OUT/index.html and the release tarball OUT/zooport-reports.tar.gz. Default: one small
# model per source framework x task (8 min measured on 2 cores); MODELS=all: every registered model (hours).
REPORT_MODELS := cifar_resnet20_v1 resnet18_v1 ssd_512_mobilenet1.0_voc simple_pose_resnet18_v1b \
	ResNet18 YOLOv3_MobileNetV1 FastSCNN ppocr_mobile_v2_cls ppocrv4_rec
REPORT_LIST = $(if $(filter all,$(MODELS)),$(shell $(BIN)/python -c 'from converters import registry; print(*registry.names())'),$(or $(MODELS),$(REPORT_MODELS)))
REPORT_OUT = $(or $(OUT),reports)
reports: setup
	@failed=""; for m in $(REPORT_LIST); do \
		rm -f "$(REPORT_OUT)/$$m.json"; \
		$(BIN)/zooport report "$$m" --fallback-random --out $(REPORT_OUT) || failed="$$failed $$m"; \
	done; \
	$(BIN)/python -m parity.report.index $(REPORT_OUT) || exit 1; \
	if [ -n "$$failed" ]; then echo "reports: no report or a FAIL verdict for:$$failed" >&2; exit 1; fi

# headless Chromium for tests/test_report.py (renders the HTML reports); Debian's package
chromium:
	@command -v chromium >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y chromium; }

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
