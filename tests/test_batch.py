"""`dreamtext batch`: job lists checked before anything runs, one workspace per job, local and Ray engines with
the same results, a killed batch that resumes, shards that cover every job once (tiny random pipeline, CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreamtext.batch import BatchConfig, read_jobs, run_batch, shard
from dreamtext.cli.main import main
from dreamtext.batch.runner import Task, execute
from dreamtext.errors import DreamtextError, RunInterrupted
from dreamtext.utils.images import save_image
from dreamtext.utils.workspace import Workspace

# Toy sizes for a text-to-3D run, by the config's own dotted names (what a job file holds).
TOY = {
    "render_size": 16, "device": "cpu", "field.hidden_dim": 16, "field.num_blocks": 1,
    "field.encoding.log2_hashmap_size": 12, "field.encoding.max_resolution": 64, "renderer.num_samples": 16,
    "validation_size": 16, "validation_views": 2, "eval_every": 100, "shading.albedo_only_epochs": 0,
    "export.mesh.resolution": 24, "export.mesh.density_threshold": 5.0, "export.video_frames": 2, "export.video_size": 16,
    "export.views": ["front"], "export.views_size": 16,
}


def text_job(prompt: str, model: str, iters: int = 3, **extra) -> dict:
    return {"kind": "text", "prompt": prompt, "preset": "dreamfusion",
            "overrides": {**TOY, "model": model, "iters": iters, "checkpoint_every": 1}, **extra}


def image_job(image: str, model: str) -> dict:
    stages = {"device": "cpu", "model": model}
    return {"kind": "image", "image": image,
            "overrides": {**{f"descriptor.{k}": v for k, v in stages.items()}, "descriptor.iters": 2,
                          **{f"reconstruct.{k}": v for k, v in stages.items()}, "reconstruct.iters": 2,
                          "reconstruct.render_size": 16, "describe.device": "cpu",
                          # the reconstruction's text-to-3D settings, by their option names (reconstruct.text.*)
                          **{f"reconstruct.{k}": v for k, v in TOY.items() if k not in ("render_size", "device")}}}


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    image = torch.ones(32, 32, 3)
    image[8:24, 10:22] = torch.tensor([0.8, 0.1, 0.1])
    return save_image(tmp_path / "photo.png", image)


# -- the job list ----------------------------------------------------------------------------------


def test_prompt_lists_and_json_lines_give_stable_named_jobs(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# objects\na red mug\n\na blue chair\n")
    jobs = read_jobs(prompts, seeds=[0, 1])
    assert [(j.kind, j.prompt, j.seed) for j in jobs] == [("text", "a red mug", 0), ("text", "a red mug", 1),
                                                          ("text", "a blue chair", 0), ("text", "a blue chair", 1)]
    assert jobs[0].name.startswith("text_a_red_mug_s0_") and len({j.name for j in jobs}) == 4
    # A name depends on the job, not on its place in the list.
    prompts.write_text("a blue chair\na red mug\n")
    assert {j.name for j in read_jobs(prompts, seeds=[0, 1])} == {j.name for j in jobs}
    lines = write_jobs(tmp_path / "jobs.jsonl", [
        {"kind": "text", "prompt": "a red mug", "overrides": {"--sds.guidance": 50, "renderer.max-samples-per-chunk": 4096}, "seeds": [3]},
        {"kind": "image", "image": "photo.png", "method": "realfusion"},
        {"kind": "diverse", "prompt": "An image of a dog", "n": 2},
    ])
    text, image, diverse = read_jobs(lines)
    assert text.seed == 3 and text.overrides == {"sds.guidance": 50, "renderer.max_samples_per_chunk": 4096}
    assert image.image == str(tmp_path / "photo.png") and image.method == "realfusion" and diverse.n == 2
    assert image.seed is None and diverse.seed is None
    from dreamtext.batch.jobs import image_job_config

    assert image_job_config(image).method == "realfusion"  # the line's method
    plain = read_jobs(write_jobs(tmp_path / "plain.jsonl", [{"kind": "image", "image": "photo.png"}]))[0]
    assert image_job_config(plain).method == "dreamtext+reference" and image_job_config(diverse).method == "dreamtext"
    # The batch's seeds expand every line without its own; a line's own seeds win.
    assert [j.seed for j in read_jobs(lines, seeds=[0, 1])] == [3, 0, 1, 0, 1]


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    ('{"kind": "mesh", "prompt": "a mug"}', "line 2: unknown kind 'mesh'"),
    ('{"prompt": "a mug", "overrides": {"no_such_setting": 1}}', "no setting 'no_such_setting'"),
    ('{"prompt": "a mug", "overrides": {"sds.no_such": 1}}', "no setting 'no_such'"),
    ('{"kind": "image"}', "line 2: an image job needs an \"image\" path"),
    ('{"prompt": "  "}', "line 2: a text job needs a non-empty \"prompt\""),
    ('{"prompt": "a mug", "preset": "fast"}', "line 2: unknown preset 'fast'"),
    ('{"prompt": "a mug", "colour": "red"}', "line 2: unknown keys ['colour']"),
    ('{"prompt": "a mug", "overrides": {"iters": 0}}', "line 2: --iters must be at least 1"),
    ('{"prompt": "a mug", "seeds": [-1]}', "line 2: --seed must be an integer from 0"),
    ('{"kind": "image", "image": "x.png", "overrides": {"descriptor.iters": 0}}', "line 2: --iters must be at least 1"),
    ('{"kind": "image", "image": "x.png", "overrides": {"reconstruct.render_size": 2}}', "line 2: --render-size must be at least 8"),
])
def test_bad_job_files_are_one_line_errors_naming_the_line_before_anything_runs(tmp_path, line, message, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a red mug"}\n' + line + "\n")
    with pytest.raises(DreamtextError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_jobs(jobs)
    assert main(["batch", str(jobs), "--workspace", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dreamtext: error:") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_shards_cover_every_job_exactly_once(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"object number {i}\n" for i in range(40)))
    jobs = read_jobs(prompts)
    for count in (1, 3, 7):
        shares = [shard(jobs, index, count) for index in range(count)]
        names = [job.name for share in shares for job in share]
        assert sorted(names) == sorted(job.name for job in jobs)
        if count > 1:
            assert all(0 < len(share) < len(jobs) for share in shares)
    with pytest.raises(DreamtextError, match="--shard 3/3"):
        shard(jobs, 3, 3)
    # On the command line and in BatchConfig a shard is written as Slurm gives it, INDEX/COUNT.
    assert BatchConfig(shard="2/7").shard_index_count() == (2, 7) and BatchConfig().shard_index_count() is None
    with pytest.raises(DreamtextError, match="write INDEX/COUNT"):
        BatchConfig(shard="2 of 7").check()


# -- running ---------------------------------------------------------------------------------------


def _final_losses(record: dict) -> list[float]:
    return Workspace(record["workspace"]).load_checkpoint()["losses"]


def test_a_local_batch_runs_every_job_records_failures_and_skips_finished_jobs(tmp_path, tiny_model, photo):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        text_job("a red mug", tiny_model), text_job("a blue chair", tiny_model),
        image_job(str(photo), tiny_model), image_job(str(tmp_path / "missing.png"), tiny_model),
    ])
    out = tmp_path / "out"
    summary = run_batch(jobs, out, progress=False)
    assert summary["counts"] == {"done": 3, "failed": 1} and summary["skipped"] == 0
    records = {r["kind"] + (r["image"] or r["prompt"] or ""): r for r in summary["jobs"]}
    failed = records["image" + str(tmp_path / "missing.png")]
    assert failed["status"] == "failed" and "no such image file" in failed["error"] and "\n" not in failed["error"]
    for record in summary["jobs"]:
        if record["status"] == "done":
            assert Path(record["workspace"]).parent == out and record["wall_s"] > 0
            assert any(name.endswith("mesh.glb") for name in record["outputs"]) or "mesh_error" in json.dumps(record["metrics"])
    assert json.loads((out / "summary.json").read_text())["counts"] == {"done": 3, "failed": 1}
    index = (out / "gallery" / "index.html").read_text()
    assert index.count('class="run"') == 3 and "a red mug" in index
    # Run again: the finished jobs are skipped (nothing trains), the failed one is tried again.
    again = run_batch(jobs, out, progress=False)
    assert again["skipped"] == 3 and again["counts"] == {"done": 3, "failed": 1}
    for before, after in zip(summary["jobs"], again["jobs"]):
        assert before["status"] == after["status"] and before.get("metrics") == after.get("metrics")


def test_ray_engine_gives_the_local_engines_results(tmp_path, tiny_model):
    ray = pytest.importorskip("ray")
    jobs = write_jobs(tmp_path / "jobs.jsonl", [text_job("a red mug", tiny_model, seeds=[0, 1])])
    local = run_batch(jobs, tmp_path / "local", BatchConfig(gallery=False), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # Two CPUs a task: torch then sums with the two threads the local run used, so the floats are the same.
        on_ray = run_batch(jobs, tmp_path / "ray", BatchConfig(engine="ray", cpus_per_job=2, gallery=False), progress=False)
    finally:
        ray.shutdown()
    assert on_ray["counts"] == local["counts"] == {"done": 2, "failed": 0}
    for a, b in zip(local["jobs"], on_ray["jobs"]):
        assert a["name"] == b["name"] and a["metrics"]["final_loss"] == b["metrics"]["final_loss"]
        assert _final_losses(a) == _final_losses(b)


def test_a_killed_batch_resumes_and_ends_as_an_uninterrupted_one(tmp_path, tiny_model):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [text_job("a red mug", tiny_model, iters=3),
                                                text_job("a blue chair", tiny_model, iters=60)])
    straight = run_batch(jobs, tmp_path / "straight", BatchConfig(gallery=False), progress=False)
    out = tmp_path / "killed"
    first, second = read_jobs(jobs)
    command = [sys.executable, "-m", "dreamtext.cli", "batch", str(jobs), "--workspace", str(out), "--no-gallery", "--quiet"]
    process = subprocess.Popen(command)  # the same torch threads as this process, so the same floats
    try:
        deadline = time.monotonic() + 240
        while not ((out / second.name / "checkpoints" / "last.pt").is_file() and (out / first.name / "job.json").is_file()):
            assert process.poll() is None and time.monotonic() < deadline, "the batch ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    interrupted_at = Workspace(out / second.name).load_checkpoint()["step"]
    assert 0 < interrupted_at < 60 and not (out / second.name / "job.json").is_file()
    resumed = run_batch(jobs, out, BatchConfig(gallery=False), progress=False)
    assert [bool(r.get("skipped")) for r in resumed["jobs"]] == [True, False]
    for a, b in zip(straight["jobs"], resumed["jobs"]):
        assert a["metrics"]["final_loss"] == b["metrics"]["final_loss"] and _final_losses(a) == _final_losses(b)


def test_sigterm_stops_the_batch_with_its_job_interrupted_and_a_rerun_resumes_it(tmp_path, tiny_model):
    """Issue 40: SIGTERM to a batch stops the job in progress at a step boundary (with a checkpoint), records it
    as interrupted, starts no other job and exits 143; the next run resumes it."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [text_job("a red mug", tiny_model, iters=60),
                                                text_job("a blue chair", tiny_model, iters=2)])
    out = tmp_path / "out"
    first, second = read_jobs(jobs)
    command = [sys.executable, "-m", "dreamtext.cli", "batch", str(jobs), "--workspace", str(out), "--no-gallery", "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / first.name / "checkpoints" / "last.pt").is_file():
            assert process.poll() is None and time.monotonic() < deadline, "the batch ended before it could be stopped"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "SIGTERM: stopped after step" in stderr and "rerun it to resume" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [job["status"] for job in summary["jobs"]] == ["interrupted", "pending"]
    assert summary["counts"] == {"done": 0, "failed": 0, "interrupted": 1, "pending": 1}
    stopped_at = Workspace(out / first.name).load_checkpoint()["step"]
    assert 0 < stopped_at < 60 and not (out / second.name).exists()
    resumed = run_batch(jobs, out, BatchConfig(gallery=False), progress=False)
    assert resumed["counts"] == {"done": 2, "failed": 0} and resumed["jobs"][0]["metrics"]["iters"] == 60


def stopped_task(name: str, *, threads: int | None = None) -> dict:
    """A job that a stop request ended in its worker (module level: a spawned worker imports it)."""
    error = RunInterrupted(f"SIGTERM: stopped during {name}; continue with --resume", 143)
    error.record = {"name": name, "status": "interrupted"}
    raise error


def test_a_job_stopped_on_a_local_worker_reaches_the_batch_as_interrupted(tmp_path):
    """A RunInterrupted raised in a worker process crosses to the parent whole (it used to fail to unpickle, and
    the pool reported itself broken instead of the job as interrupted)."""
    with pytest.raises(RunInterrupted) as info:
        list(execute([Task("a", stopped_task, ("a",), {"name": "a"})], BatchConfig(workers=2), tmp_path))
    assert info.value.exit_code == 143 and info.value.records == [{"name": "a", "status": "interrupted"}]


def marking_task(path: str, *, threads: int | None = None) -> dict:
    Path(path).write_text("ran")
    return {"name": Path(path).name, "status": "done"}


def stopped_together_task(name: str, folder: str, *, threads: int | None = None) -> dict:
    """Stopped once every task of this kind has started: each runs on a worker of its own."""
    (Path(folder) / f"started-{name}").write_text("")
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return stopped_task(name)


def test_a_worker_whose_job_was_stopped_starts_no_other(tmp_path):
    """Two workers, three tasks: both running tasks are stopped; the third, already queued to a worker, comes
    back unstarted as pending instead of running whole (the stop request is forgotten when a run ends)."""
    tasks = [Task(name, stopped_together_task, (name, str(tmp_path)), {"name": name}) for name in ("a", "b")]
    tasks.append(Task("c", marking_task, (str(tmp_path / "c"),), {"name": "c"}))
    with pytest.raises(RunInterrupted, match="2 job") as info:
        list(execute(tasks, BatchConfig(workers=2), tmp_path))
    assert sorted((r["name"], r["status"]) for r in info.value.records) == [("a", "interrupted"), ("b", "interrupted"), ("c", "pending")]
    assert not (tmp_path / "c").exists()


def test_batch_settings_reach_every_job_and_a_rerun_of_the_same_list_warns_of_nothing(tmp_path, tiny_model, capsys):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [text_job("a red mug", tiny_model, iters=2), text_job("a blue chair", tiny_model, iters=2)])
    everyone = BatchConfig(gallery=False, set=("iters=3", "sds.guidance=20"))
    assert [job.overrides["iters"] for job in read_jobs(jobs, settings={"iters": 3})] == [3, 3]
    summary = run_batch(jobs, tmp_path / "out", everyone, progress=False)
    assert [record["metrics"]["iters"] for record in summary["jobs"]] == [3, 3]
    saved = [json.loads((tmp_path / "out" / record["name"] / "config.json").read_text())["config"] for record in summary["jobs"]]
    assert [config["sds"]["guidance"] for config in saved] == [20, 20]
    capsys.readouterr()
    again = run_batch(jobs, tmp_path / "out", everyone, progress=False)
    assert again["skipped"] == 2 and "warning" not in capsys.readouterr().err
    with pytest.raises(DreamtextError, match="--set 'iters': write KEY=VALUE"):
        run_batch(jobs, tmp_path / "out", BatchConfig(set=("iters",)), progress=False)


def test_settings_given_as_json_lists_compare_equal_to_the_saved_tuples(capsys):
    """Issue 40: a job file's `"export.views": ["front"]` is a list; the run saves (and reloads) a tuple; resuming
    must not warn that the setting changed."""
    from dreamtext.methods.lifecycle import resumed_config
    from dreamtext.methods.presets import preset_config
    from dreamtext.methods.text_to_3d import TextTo3DConfig
    from dreamtext.utils.config import config_from_dict, config_to_dict

    requested = preset_config("dreamfusion", "a red mug", {**TOY, "export.views": ["front"], "iters": 3})
    assert requested.export.views == ("front",)
    saved = config_from_dict(TextTo3DConfig, json.loads(json.dumps(config_to_dict(requested))))
    assert resumed_config(saved, requested) == requested and capsys.readouterr().err == ""


def test_job_kinds_are_the_method_registrys():
    """One list of batch job kinds: the registry's (methods/registry.py), which the `Kind` type spells out."""
    from typing import get_args

    from dreamtext.batch.jobs import KINDS, Kind
    from dreamtext.methods.registry import BATCH_JOB_KINDS, METHODS, scene_loader

    assert KINDS == BATCH_JOB_KINDS == get_args(Kind) == ("text", "image", "diverse")
    assert scene_loader("text") is not None and scene_loader("fit") is not None
    assert scene_loader("descriptor") is None and scene_loader("no such method") is None
    assert all(METHODS[name].markers or METHODS[name].scene_loader for name in BATCH_JOB_KINDS)  # each one's workspace is known
