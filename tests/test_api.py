"""The Python API (`caviar.run`, `resume`, `submit`, `load`, `Run`): overrides and `Run` on a
run directory written without Ray; a sweep of a function defined in this module's test (a
closure); the notebooks/api.ipynb notebook, executed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from conftest import QUICK_SPEC, imported_after

import caviar
from caviar import api
from caviar.errors import CaviarError, SpecError
from caviar.spec import parse_spec
from tests.conftest import caviar_cli
from tests.test_analysis import python3_kernel, write_fake_run  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "api.ipynb"

TOY_SPEC = {
    "name": "toy",
    "metric": "score",
    "mode": "max",
    "train": {"function": "placeholder:train", "max_epochs": 2},
    "space": {"x": {"uniform": [0.0, 1.0]}},
    "searcher": {"name": "random"},
    "scheduler": {"name": "fifo"},
    "budget": {"num_samples": 3, "max_concurrent": 2},
}


def toy_train(config: dict) -> None:
    for epoch in range(1, config["max_epochs"] + 1):
        caviar.report({"epoch": epoch, "score": epoch * (1 - (config["x"] - 0.3) ** 2)})


# --- overrides and the spec, no Ray -----------------------------------------------------------


def test_import_caviar_imports_neither_ray_nor_torch():
    code = "import caviar; caviar.run; caviar.Run"
    assert imported_after(code, {"ray", "torch", "pandas"}) == set()


def test_overrides_set_top_level_keys_and_paths():
    raw = {"seed": 0, "budget": {"num_samples": 8}, "train": {"task": "digits"}}
    out = api.apply_overrides(
        raw, {"seed": 3, "budget__num_samples": 4, "train__max_epochs": 2, "checkpoint__keep": 1}
    )
    assert out == {
        "seed": 3,
        "budget": {"num_samples": 4},
        "train": {"task": "digits", "max_epochs": 2},
        "checkpoint": {"keep": 1},
    }
    assert raw == {"seed": 0, "budget": {"num_samples": 8}, "train": {"task": "digits"}}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("seed__x", "seed__x: seed is 0 in the spec, not a section with keys"),
        ("budget__", "budget__: an override is a spec key, or a path with __"),
        ("__seed", "__seed: an override is a spec key, or a path with __"),
    ],
)
def test_a_bad_override_says_what_an_override_is(key, message):
    with pytest.raises(CaviarError) as e:
        api.apply_overrides({"seed": 0}, {key: 1})
    assert e.value.problems[0].startswith(message)


def test_build_spec_from_a_dict_a_file_and_a_spec_with_overrides(write_spec):
    from_dict, fn = api.build_spec(QUICK_SPEC, overrides={"budget__num_samples": 3})
    assert fn is None and from_dict.budget.num_samples == 3 and from_dict.train.task == "digits"
    from_file, _ = api.build_spec(str(write_spec()), overrides={"train__max_epochs": 2})
    assert from_file.train.max_epochs == 2 and from_file.budget.num_samples == 8
    again, _ = api.build_spec(from_file, overrides={"seed": 5})
    assert (again.seed, again.train.max_epochs) == (5, 2)
    assert QUICK_SPEC["budget"] == {"num_samples": 8}  # the caller's dict is left as it is


def test_a_train_function_replaces_the_task_and_names_itself():
    def train(config):
        pass

    spec, fn = api.build_spec(QUICK_SPEC | {"metric": "score"}, train=train)
    assert fn is train
    assert spec.train.task is None and spec.train.function == f"{__name__}:train"
    spec, fn = api.build_spec(QUICK_SPEC | {"metric": "score"}, train="mytrain:fit")
    assert fn is None and spec.train.function == "mytrain:fit"
    spec, _ = api.build_spec(QUICK_SPEC | {"metric": "score"}, train=lambda config: None)
    assert spec.train.function == f"{__name__}:train"
    with pytest.raises(CaviarError, match=r"has the signature \(\), which cannot take the one"):
        api.build_spec(QUICK_SPEC | {"metric": "score"}, train=lambda: None)


def test_a_bad_spec_lists_its_problems_before_anything_runs():
    with pytest.raises(SpecError) as e:
        caviar.run(QUICK_SPEC, budget__num_samples=0, train__max_epochs="x")
    assert any(p.startswith("budget.num_samples") for p in e.value.problems)
    assert any(p.startswith("train.max_epochs") for p in e.value.problems)
    with pytest.raises(CaviarError, match="spec: expected a path, a dict or a SweepSpec"):
        caviar.run(42)


def test_an_interrupted_sweep_of_a_function_object_says_to_resume_from_python(monkeypatch):
    from caviar import driver
    from caviar.errors import Interrupted

    def interrupted(spec, **kwargs):
        raise Interrupted(2, "/runs/toy-1", 1, 3)

    monkeypatch.setattr(driver, "run", interrupted)
    with pytest.raises(Interrupted) as e:
        caviar.run(TOY_SPEC, train=toy_train)
    assert str(e.value) == (
        "stopped by SIGINT: 1 of 3 trials finished, results so far in /runs/toy-1; continue "
        "with: caviar.resume('/runs/toy-1', train=...)"
    )
    with pytest.raises(Interrupted, match="continue with: caviar resume /runs/toy-1$"):
        caviar.run(TOY_SPEC, train="mymodule:train")


def test_submit_refuses_a_function_object():
    with pytest.raises(CaviarError, match="submit ships the train function's module"):
        caviar.submit(QUICK_SPEC, train=toy_train, address="http://127.0.0.1:9")


# --- Run, on a run directory written without Ray ----------------------------------------------


def test_run_reads_a_run_directory(tmp_path):
    run_dir = write_fake_run(tmp_path)
    run = caviar.load(run_dir)
    assert isinstance(run, caviar.Run)
    assert run.run_dir == str(run_dir) and run.spec["name"] == "fake"
    assert len(run.trials) == 16 and set(run.history["trial_id"]) <= set(run.trials["trial_id"])
    board = run.leaderboard(top=3)
    assert len(board) == 3 and board["best_val_acc"].is_monotonic_decreasing
    assert len(run.leaderboard(top=None)) == len(run.leaderboard(top=100))
    assert run.best.trial_id == board["trial_id"].iloc[0]
    text, page = repr(run), run._repr_html_()
    for trial_id in board["trial_id"]:
        assert trial_id in text and trial_id in page
    assert text.startswith("<caviar.Run fake: 16 trials (") and "<table" in page
    out = run.report(tmp_path / "r.html")
    assert Path(out).read_text().startswith("<!DOCTYPE html>")


def test_resume_of_a_notebook_functions_run_says_what_to_do(tmp_path):
    from caviar.driver import FUNCTION_NOTE
    from caviar.spec import dump_yaml, spec_to_dict

    run_dir = tmp_path / "nb"
    run_dir.mkdir()
    spec = parse_spec({**TOY_SPEC, "train": {"function": "__main__:train", "max_epochs": 2}})
    (run_dir / "spec.yaml").write_text(FUNCTION_NOTE + dump_yaml(spec_to_dict(spec)))
    out = caviar_cli("resume", str(run_dir), cwd=tmp_path, without_ray=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        "caviar: error: train.function: '__main__:train' was passed to caviar.run as a "
        "function object (defined in a notebook or a script), which `caviar resume` cannot "
        f"import; resume from Python: caviar.resume({str(run_dir)!r}, train=train), with the "
        "same function defined\n"
    )
    with pytest.raises(CaviarError, match="ran the built-in train function of task 'digits'"):
        (run_dir / "spec.yaml").write_text(yaml.safe_dump(QUICK_SPEC))
        caviar.resume(run_dir, train=toy_train)


# --- real sweeps --------------------------------------------------------------------------------


@pytest.mark.integration
def test_run_a_closure_then_load_its_leaderboard(tmp_path, private_ray_tmp):
    offset = 0.25  # captured: the function travels by value, not by name

    def train(config):
        for epoch in range(1, config["max_epochs"] + 1):
            caviar.report({"epoch": epoch, "score": offset + epoch * config["x"]})

    run = caviar.run(TOY_SPEC, train=train, storage=str(tmp_path / "runs"), name="closure")
    assert run.run_dir == str(tmp_path / "runs" / "closure")
    assert sorted(run.trials["status"]) == ["completed"] * 3
    assert (run.trials["epochs"] == 2).all()
    board = caviar.load(run.run_dir).leaderboard()
    assert len(board) == 3
    assert board["best_score"].tolist() == sorted(
        (offset + 2 * x for x in board["param_x"]), reverse=True
    )
    spec_yaml = (Path(run.run_dir) / "spec.yaml").read_text()
    assert spec_yaml.startswith("# train.function names a function passed to caviar.run")
    assert yaml.safe_load(spec_yaml)["train"]["function"] == f"{__name__}:train"
    # The CLI cannot import a function that came as an object: a clear error, before Ray.
    out = caviar_cli("resume", run.run_dir, cwd=tmp_path, without_ray=True)
    assert out.returncode == 2, out.stderr
    assert "caviar: error: train.function: " in out.stderr
    assert f"caviar.resume({run.run_dir!r}, train=train)" in out.stderr
    # From Python, with the function: a finished sweep resumes to the same trials.
    again = caviar.resume(run.run_dir, train=train)
    assert sorted(again.trials["trial_id"]) == sorted(run.trials["trial_id"])


@pytest.mark.integration
def test_a_module_function_and_overrides(tmp_path, private_ray_tmp):
    run = caviar.run(
        {**TOY_SPEC, "budget": {"num_samples": 8}},
        toy_train,
        storage=str(tmp_path / "runs"),
        budget__num_samples=3,
        budget__max_concurrent=2,
    )
    assert len(run.leaderboard()) == 3


def test_the_api_notebook_is_stored_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    assert "def train(config" in source and "caviar.run(" in source and "train=train" in source


@pytest.mark.integration
def test_the_api_notebook_runs_a_sweep(tmp_path, private_ray_tmp, python3_kernel, monkeypatch):  # noqa: F811
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CAVIAR_STORAGE", str(tmp_path / "runs"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    (run_dir,) = (tmp_path / "runs").glob("notebook-*")
    run = caviar.load(run_dir)
    assert len(run.trials) == 3
    board_cell = next(c for c in nb.cells if c.source.strip() == "run.leaderboard()")
    (result,) = [o for o in board_cell.outputs if o.output_type == "execute_result"]
    shown = result["data"]["text/html"]
    assert shown.count("</tr>") == 1 + 3  # the header and 3 trials
    for trial_id in run.trials["trial_id"]:
        assert trial_id in shown
    # The live line was updated in place, and ends with every trial done.
    live = [o for o in outputs if o.output_type == "display_data"]
    assert live and "3/3 trials done" in live[-1]["data"]["text/plain"]
    assert os.environ["CAVIAR_STORAGE"] == str(tmp_path / "runs")
