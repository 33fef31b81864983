"""Coverage-guided fuzz target (atheris) for the experiment loader and the duration and
distribution parser: any input ends in a result or one located UserError, never another
exception. Run: python3 tests/fuzz/fuzz_loader.py tests/fuzz/corpus -max_total_time=60"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["chaoslab"]):  # coverage of chaoslab only
    from chaoslab.errors import UserError
    from chaoslab.experiment import ExperimentError, load_experiment
    from chaoslab.params.dists import ParseError, parse_value


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates(len(data))
    if text.startswith("@"):  # a parameter value, as in params: / --set
        with contextlib.suppress(ParseError):
            parse_value(text[1:])
        return
    try:
        load_experiment("fuzz.yaml", text).validate()
    except ExperimentError as e:
        assert all(line.startswith("fuzz.yaml") and "\n" not in line for line in e.lines), e
    except UserError as e:
        assert "\n" not in str(e), e


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
