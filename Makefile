# Two entry points for a fresh Debian/Ubuntu machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := avatars/sample/avatar.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: run test lint system-run system-test bench

## run: put the sample avatar on air with config.toml (records to recordings/); Ctrl-C stops cleanly
run: $(SAMPLE)
	$(BIN)/python -m broadcaster run $(ARGS)

## test: lint, type-check and run every test (installs nginx + the RTMP module for the RTMP tests)
test: system-test $(SAMPLE)
	$(BIN)/ruff check broadcaster danmaku tests bench
	$(BIN)/ruff format --check broadcaster danmaku tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## bench: the program benchmark (prints RESULT {json} last)
bench: $(SAMPLE)
	$(BIN)/python bench/program.py

# python3-venv, and a font with Chinese glyphs for the captions and product cards
system-run:
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || [ ! -d /usr/share/fonts/opentype/noto ]; then \
		$(APT) update && $(APT) install -y python3-venv fonts-noto-cjk; fi

# nginx + the RTMP module (RTMP tests), Chromium (the dashboard test)
system-test: system-run
	@if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] \
		|| ! command -v chromium >/dev/null; then \
		$(APT) update && $(APT) install -y nginx-light libnginx-mod-rtmp chromium; fi

$(BIN)/python: pyproject.toml | system-run
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,wav2lip,piper]'
	$(BIN)/pip install --quiet --no-deps mediapipe==0.10.21
	$(BIN)/pip install --quiet --no-deps silero-vad==6.2.3
	@touch $@

$(SAMPLE): $(BIN)/python broadcaster/face/builder.py broadcaster/face/avatar.py
	$(BIN)/python -m broadcaster avatar build "$$($(BIN)/python -c 'import matplotlib.cbook as c; print(c.get_sample_data("grace_hopper.jpg", asfileobj=False))')" --name sample
