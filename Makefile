# The front door: `make run` serves the app, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: setup run test test-fast lint format bench clean

setup: $(STAMP)

# Re-installs only when a requirements file changed since the last install.
$(STAMP): requirements.txt requirements-dev.txt requirements-packs.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-packs.txt
	touch $@

run: setup
	$(PY) app.py

# Everything CI runs: lint and format checks, then every test (unit, pipelines, the live app, the browser).
test: setup lint
	$(PY) -m pytest

# The quick loop while coding: unit and pipeline tests, no live app, no browser, no big model (under a minute).
test-fast: setup
	$(PY) -m pytest -q -m "not app and not browser and not slow and not cluster"

# ruff: lint and formatting, configured in pyproject.toml. `make format` rewrites the files.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: setup setup-cluster
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache artifacts

# VAE Interpolation tab: retrain the small VAEs (digits about 6 minutes, faces about 15 on 2 busy cores).
.PHONY: train-vae-faces train-vae-digits
train-vae-faces: setup
	$(PY) -m training.train_vae --data faces

train-vae-digits: setup
	$(PY) -m training.train_vae --data digits

# About an hour on 2 CPU cores; writes weights/text-to-image/ and its model card with measured adherence.
train-text-to-image: setup
	$(PY) -m training.train_text_to_image --seed 0
.PHONY: train-text-to-image

# About 50 minutes: picks the Text -> Image tab's default scheduler and guidance on 600 validation prompts.
select-sampling: setup
	$(PY) -m training.select_sampling
.PHONY: select-sampling

# Pinned requirements against security/advisories.json, PyPI's vulnerability data and pip-audit where reachable.
.PHONY: audit
audit: setup
	$(PY) -m tools.audit_requirements

# Load test: 40 concurrent gradio_client users x 2 requests against a freshly launched app, then 1,000 cheap
# requests to watch memory; writes its section of BENCHMARKS.md. Options: python -m benchmarks.loadtest --help
loadtest: setup
	$(PY) -m benchmarks benchmarks.loadtest
.PHONY: loadtest

# The README's screenshots, taken by the browser tests: the whole app on a desktop and a phone, and one page a tab.
screenshots: setup
	$(PY) -m pytest tests/test_browser_*.py -q
	cp artifacts/screenshots/app-desktop-*.png artifacts/screenshots/app-phone-*.png docs/screenshots/
	cp artifacts/screenshots/text-to-image.png docs/screenshots/text-to-image.png
	cp artifacts/screenshots/gan-faces-sample.png docs/screenshots/gan-faces.png
	cp artifacts/screenshots/vae-interpolate.png docs/screenshots/vae-interpolation.png
	cp artifacts/screenshots/text-generation-look-inside.png docs/screenshots/text-generation.png
	cp artifacts/screenshots/diffusion-lab-forward.png docs/screenshots/diffusion-lab.png
	cp artifacts/screenshots/text-inspection-attention.png docs/screenshots/inside-the-transformer-attention.png
	cp artifacts/screenshots/text-inspection-perplexity.png docs/screenshots/inside-the-transformer-perplexity.png
	cp artifacts/screenshots/training-gan.png docs/screenshots/training.png
	cp artifacts/screenshots/evaluation-images.png docs/screenshots/evaluation.png
.PHONY: screenshots

# Cluster mode (docs/deploy-cluster.md). Ray is heavy, so requirements-cluster.txt is installed only by these targets.
CLUSTER_STAMP := $(VENV)/.cluster-installed
$(CLUSTER_STAMP): requirements-cluster.txt $(STAMP)
	$(PIP) install -q -r requirements-cluster.txt
	touch $@

.PHONY: setup-cluster run-cluster serve test-cluster loadtest-cluster
setup-cluster: $(CLUSTER_STAMP)

# A local Ray head, the Serve application of deploy/serve_config.yaml, then the same page on http://127.0.0.1:7860
# with the tabs calling the deployments over HTTP. RAY_ADDRESS=... joins an existing cluster instead.
run-cluster: setup-cluster
	GENAI_PLAYGROUND_BACKEND=ray $(PY) app.py

# The Serve application alone, as its config says (`serve run`, port 8000): e.g. on a GPU host for other apps.
serve: setup-cluster
	PYTHONPATH=$(CURDIR) $(VENV)/bin/serve run deploy/serve_config.yaml

# A local Ray inside the tests (2 CPUs): each deployment answers, outputs match in-process byte for byte, a killed
# replica is replaced, the app in client mode serves the same results. About 5 minutes.
test-cluster: setup-cluster
	$(PY) -m pytest -m cluster -q

# The load test against the app in client mode with the models on a local Ray; writes its BENCHMARKS.md section.
loadtest-cluster: setup-cluster
	$(PY) -m benchmarks benchmarks.loadtest_cluster

# A few minutes: the Diffusion lab's inpainting and cross-attention measures, written to
# weights/text-to-image/lab.json and the model card's "Diffusion lab" section (rerun it after retraining: the
# training script rewrites the card). One torch thread: on a shared 2-core machine two were far slower.
evaluate-lab: setup
	$(PY) -m training.evaluate_lab --resample-study 2 --threads 1
.PHONY: evaluate-lab

# The Evaluate tab's shipped plots and tables (weights/evaluation/): about 100 minutes on 2 busy CPU cores.
# `python -m training.precompute_evaluation --plots-only` redraws the plots from the measured JSON files.
precompute-evaluation: setup
	$(PY) -m training.precompute_evaluation
.PHONY: precompute-evaluation
