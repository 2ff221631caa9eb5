.PHONY: demo test bootstrap
# The two commands the README promises. Each sets up .venv on first use.
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bootstrap:
	bash scripts/bootstrap.sh
