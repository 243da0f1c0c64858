# deliverck: the verbs.  `make demo` and `make test` work on a fresh machine:
# they install what they need (a virtualenv, and the Debian packages the lab uses).

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
# Debian packages of the lab: NSD (authoritative DNS), unbound (validating
# resolver), iproute2 (addresses in the namespace), util-linux (unshare),
# Postfix (a real MTA as SMTP peer), openssl (signs the lab's SHA-1 test cert),
# MIT Kerberos (krb5kdc, kadmind for kpasswd, kdb5_util) and faketime (a KDC with its clock off).
# Not the lab's but installed the same way: chromium, the real browser the HTML report tests drive
# through Playwright (tests/browser.py, by executable_path: `playwright install` is never run).
LAB_DEBS := nsd unbound iproute2 util-linux postfix openssl krb5-kdc krb5-admin-server faketime chromium
LAB_BINS := /usr/sbin/nsd /usr/sbin/unbound /usr/bin/unshare /usr/sbin/postfix /usr/bin/openssl \
            /usr/sbin/krb5kdc /usr/sbin/kadmind /usr/sbin/kdb5_util /usr/bin/faketime /usr/bin/chromium
LAB      := $(BIN)/deliverck lab run --

.PHONY: setup debs demo test bench docs lint clean

setup: $(STAMP) debs

$(STAMP): pyproject.toml
	@echo "setup: installing deliverck and its test tools into $(VENV) (pip) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@# setuptools says "Editable installation." (10 lines of advice) on every editable install: not news.
	@PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

debs:
	@missing=""; for b in $(LAB_BINS); do [ -x $$b ] || missing="$$missing $$b"; done; \
	command -v ip >/dev/null 2>&1 || missing="$$missing ip"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "the lab needs: $(LAB_DEBS) (missing:$$missing); run: sudo apt-get install $(LAB_DEBS)"; exit 2; fi; \
	  echo "installing Debian packages for the lab: $(LAB_DEBS)"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  printf '%s\n' "krb5-config krb5-config/default_realm string" \
	    "krb5-config krb5-config/add_servers boolean false" | debconf-set-selections; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(LAB_DEBS) >/dev/null; \
	fi

# The lab says on stderr what it starts; then the demo's own output.
demo: setup
	@$(LAB) $(BIN)/python -m deliverck.lab.demo

test: setup
	$(LAB) $(BIN)/python -m pytest -q

# The benchmarks live in bench/ (not shipped); BENCH_ARGS="--only dnsbl,spf" runs some parts.
bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/deliverck checks --format markdown > docs/checks.md
	$(BIN)/python -m deliverck.ndr.docs > docs/ndr.md

# ruff reads the source tree as it is.  mypy must see checks/ where Python finds it,
# as deliverck.checks (setuptools' package-dir mapping, which mypy cannot follow),
# so it runs on a tree of links, build/mypy/deliverck, and its paths are mapped back.
lint: $(STAMP)
	$(BIN)/python -m compileall -q deliverck checks tests
	$(BIN)/ruff check deliverck checks tests bench
	@rm -rf build/mypy/deliverck && mkdir -p build/mypy/deliverck
	@for f in deliverck/*; do ln -s ../../../$$f build/mypy/deliverck/; done
	@ln -s ../../../checks build/mypy/deliverck/checks
	@echo "mypy -p deliverck (checks/ as deliverck.checks)"
	@cd build/mypy && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p deliverck > report.txt; \
	  rc=$$?; sed -e 's#^deliverck/checks/#checks/#' report.txt; exit $$rc

clean:
	rm -rf $(VENV) build dist *.egg-info
