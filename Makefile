# Avatar Capture. The two set-up commands are `make demo` and `make test`; both create .venv
# from the pinned requirements.txt and requirements-nodeps.txt (mediapipe, installed without its
# conflicting declared dependencies) first if needed (again whenever one of them or
# pyproject.toml changes). `make test` also installs the Khronos glTF validator the splat export
# tests run (npm package pinned by tools/gltf_validator/package-lock.json; needs node and npm),
# again only when its lock file changes, so later runs work offline.
#
#   make demo        capture assets/demo_capture.mp4: out/demo.{npz,blend,fbx,glb} and out/demo_overlay.mp4
#   make test        run every test (pytest)
#   make extension   build the Blender extension zip into dist/ (tools/build_extension.py)
#   make clean       remove build outputs; `make distclean` also removes .venv, .cache and wheels

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VALIDATOR := tools/gltf_validator
VALIDATOR_STAMP := $(VALIDATOR)/node_modules/.installed
PIP_VERSION := 26.3

# Anny's model cache (~51 MB after the first ~1-2 min build) and built rigs stay inside the
# checkout unless the caller chose a folder.
export AVATAR_CAPTURE_CACHE ?= $(CURDIR)/.cache

.PHONY: venv validator demo test extension clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: bpy 5.0.1 exists for Python 3.11 only" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

validator: $(VALIDATOR_STAMP)

$(VALIDATOR_STAMP): $(VALIDATOR)/package.json $(VALIDATOR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the tests validate glTF files with Node.js (install nodejs and npm)" >&2; exit 1; }
	npm ci --prefix $(VALIDATOR) --no-audit --no-fund --loglevel=error
	touch $@

demo: $(STAMP)
	$(VENV)/bin/avatarcap demo --out out

test: $(STAMP) $(VALIDATOR_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

extension: $(STAMP)
	$(PY) tools/build_extension.py $(EXTENSION_ARGS)

clean:
	rm -rf build dist out .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache $(VALIDATOR)/node_modules
	find wheels -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
