"""The real `dvc repro`, end to end, on tiny params in a scratch copy of this repository.

The repro of every stage is the session's shared tiny run (tests/conftest.py's `tiny_repo`, built cold
once, read here). Then, in a clone of it: a second repro does nothing, `dvc exp run -S` makes an experiment
that `dvc exp show` reports, `dvc plots diff` renders, and the artifacts survive a `dvc push` / `dvc pull`.
"""

import json
import shutil

import pytest
import yaml

from helpers.dvc_checks import check_params_trace

pytestmark = pytest.mark.slow  # 6-8 minutes: the whole tiny pipeline (shared), then reruns of parts of it

STAGES = ["fetch", "clean", "tokenize", "zeroshot", "study_grid", "study_halving", "study_seeds@1",
          "study_lr_find@sgd", "study_summary", "study_batch", "train", "scratch@xs", "scratch@full", "scratch_long",
          "scratch_seeds@1", "fraction@0.5", "transfer", "generate", "evaluate", "report"]


@pytest.fixture(scope="module")
def repo(tiny_repo, tmp_path_factory):
    """A clone of the shared run for the tests below, which rerun stages and change params (in this order)."""
    project = tiny_repo.clone(tmp_path_factory.mktemp("pipeline") / "repo")
    return project.path, project.run


def test_repro_runs_every_stage_and_writes_every_output(tiny_repo):
    path = tiny_repo.path
    for stage in STAGES:
        assert f"Running stage '{stage}'" in tiny_repo.repro_stdout, stage
    for out in ["data/raw/manifest.json", "data/clean/documents.jsonl", "data/tokenized/dataset_dict.json",
                "models/base/model.safetensors", "models/finetuned/model.safetensors", "models/finetuned/README.md",
                "models/scratch/xs/model.safetensors", "models/scratch/full/model.safetensors",
                "metrics/zeroshot.json", "metrics/finetune/metrics.json", "metrics/finetune/plots/metrics/val/loss.tsv",
                "metrics/study.json", "metrics/study/recommended.json", "metrics/frontier.json",
                "metrics/eval.json", "plots/study/grid.csv", "plots/frontier/frontier.csv",
                "reports/samples.jsonl", "reports/review/index.html", "data/review_key.csv", "reports/report.md"]:
        assert (path / out).exists(), out
    summary = json.loads((path / "metrics/study.json").read_text())
    assert {(r["optimizer"], r["lr"]) for r in summary["grid"]} == {
        ("adamw", 0.001), ("adamw", 0.01), ("sgd", 0.001), ("sgd", 0.01)}
    assert summary["rung_steps"] == [2, 4] and len(summary["rounds"]) == 1
    recommended = json.loads((path / "metrics/study/recommended.json").read_text())
    finetune = json.loads((path / "metrics/finetune/metrics.json").read_text())
    # train.optimizer/lr auto: the fine-tune used what the study recommended.
    assert (finetune["optimizer"], finetune["lr"]) == (recommended["optimizer"], recommended["lr"])
    assert finetune["steps"] <= 6 and finetune["best_val_loss"] < finetune["initial_val_loss"]
    # One held-out loss per model: the model saved is the fine-tune's best point, and evaluate measures it again.
    evaluated = json.loads((path / "metrics/eval.json").read_text())["perplexity"]["finetuned"]["loss"]
    assert evaluated == pytest.approx(finetune["best_val_loss"], abs=1e-4)
    assert finetune["best_val_bpb"] > 0 and json.loads((path / "metrics/zeroshot.json").read_text())["bits_per_byte"]
    assert (path / "metrics/finetune/samples.jsonl").is_file()  # samples while training
    frontier = json.loads((path / "metrics/frontier.json").read_text())
    assert frontier["best_scratch_size"] in ("xs", "full") and len(frontier["data_efficiency"]) == 2
    assert set(frontier["epochs"]["0.5"]) == {"finetune", "scratch"} and frontier["finetune"]["compare_steps"] == 4
    batch = json.loads((path / "metrics/study/batch/summary.json").read_text())
    assert [r["batch_size"] for r in batch["runs"]] == [1, 2] and batch["best_at_equal_tokens"] in (1, 2)
    report = (path / "reports/report.md").read_text()
    assert f"{finetune['best_val_loss']:.3f}" in report and "## 3. Epochs and early stopping" in report
    assert not list(path.glob("checkpoints/*"))


def test_every_stage_reads_only_the_params_dvc_yaml_lists(tiny_repo):
    problems = check_params_trace(tiny_repo.path, tiny_repo.params_trace)
    assert not problems, "\n".join(problems)


def test_second_repro_changes_nothing(repo):
    _, run = repo
    again = run("dvc", "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout.lower() or "didn't change" in again.stdout


def test_changing_a_clean_rule_invalidates_clean_but_not_fetch(repo):
    path, run = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["clean"]["script_layout"] = False
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        status = json.loads(run("dvc", "status", "--json").stdout)
        assert "clean" in status and "fetch" not in status
        out = run("dvc", "repro", "tokenize").stdout
        assert "Running stage 'clean'" in out and "Running stage 'tokenize'" in out
        assert "Running stage 'fetch'" not in out
    finally:
        run("git", "checkout", "params.yaml")
        run("dvc", "repro")


def test_exp_run_with_a_new_lr_reruns_train_only_downstream(repo):
    _, run = repo
    out = run("dvc", "exp", "run", "-S", "train.lr=3e-5").stdout
    assert "Running stage 'train'" in out
    # The batch-size runs follow the fine-tune's optimizer and lr (study_batch): they rerun; the lr study does not.
    for untouched in ("fetch", "clean", "tokenize", "zeroshot", "scratch", "study_grid", "study_halving",
                      "study_seeds", "study_lr_find", "study_summary"):
        assert f"Running stage '{untouched}" not in out
    shown = json.loads(run("dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "3e-05" in text and "final_val_loss" in text


def test_plots_diff_renders(repo):
    path, run = repo
    run("dvc", "plots", "diff", "HEAD", "-o", "plots_html")
    html = (path / "plots_html/index.html").read_text()
    assert "Held-out loss vs training FLOPs" in html


def test_push_pull_round_trip(repo):
    path, run = repo
    remote = path.parent / (path.name + "-remote")
    run("dvc", "remote", "add", "-f", "-d", "roundtrip", str(remote), "--local")
    run("dvc", "push")
    shutil.rmtree(path / ".dvc/cache")
    shutil.rmtree(path / "models/finetuned")
    shutil.rmtree(path / "data/tokenized")
    run("dvc", "pull")
    assert (path / "models/finetuned/model.safetensors").is_file()
    status = run("dvc", "status")
    assert "up to date" in status.stdout.lower()
