"""``python -m backend``: the exact command lines of issue 3, end to end, and every bad input.

End-to-end runs go through a real subprocess; the many bad-input cases call ``backend.cli.main`` in
process (same code path, without paying the interpreter start each time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from backend import cli
from tests.conftest import REPO


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_main(capsys, monkeypatch):
    """``cli.main(args)`` in this process → (exit code, stdout, stderr)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)    # main() installs its own

    def call(*args: str | Path) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return call


def assert_one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and " Fix: " in lines[0], lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def source_npy(tmp_path_factory, sample_features) -> Path:
    path = tmp_path_factory.mktemp("source") / "source.npy"
    np.save(path, sample_features[:100])
    return path


# --- end to end (subprocess) ------------------------------------------------------------------------


def test_generate_end_to_end(tiny_weights, tmp_path) -> None:
    out = tmp_path / "gen.npz"
    proc = run_cli("generate", "--weights", tiny_weights, "--prompt", "a person walks forward",
                   "--prompt", "a person jumps", "--frames", "41", "--seed", "3", "--steps", "5",
                   "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        assert set(data.files) == {"joints", "features", "tokens", "lengths", "fps"}
        assert data["joints"].shape == (2, 40, 22, 3) and data["joints"].dtype == np.float32
        assert data["features"].shape == (2, 40, 263) and data["features"].dtype == np.float32
        assert data["tokens"].shape == (2, 10, 6) and data["tokens"].dtype == np.int64
        assert data["lengths"].tolist() == [40, 40] and data["lengths"].dtype == np.int64
        assert float(data["fps"]) == 20.0
    assert [p.name for p in tmp_path.iterdir()] == ["gen.npz"]       # no temporary file left behind


def test_inpaint_end_to_end(tiny_weights, source_npy, tmp_path) -> None:
    out = tmp_path / "inpaint.npz"
    proc = run_cli("inpaint", "--weights", tiny_weights, "--source", source_npy, "--prompt", "a person kicks",
                   "--start", "30", "--end", "61", "--seed", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        assert set(data.files) == {"joints", "features", "tokens", "lengths", "fps", "start", "end"}
        assert (int(data["start"]), int(data["end"])) == (28, 64)
        assert data["joints"].shape == (1, 100, 22, 3) and data["tokens"].shape == (1, 25, 6)


def test_make_test_weights_end_to_end(tmp_path) -> None:
    proc = run_cli("make-test-weights", tmp_path / "w", "--size", "tiny", "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "w/t2m/t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns/model/latest.tar").is_file()
    assert (tmp_path / "w/t2m/rvq_nq6_dc512_nc512_noshare_qdp0.2/meta/mean.npy").is_file()


def test_bad_input_from_a_real_process(tiny_weights, tmp_path) -> None:
    out = tmp_path / "out.npz"
    proc = run_cli("generate", "--weights", tiny_weights, "--prompt", "  ", "--out", out)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "empty")
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --- bad input (in process) -------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "words"), [
    (["--prompt", ""], ["empty"]),
    (["--prompt", "walk", "--prompt", " \t"], ["empty"]),
    (["--prompt", "walk", "--frames", "0"], ["196"]),
    (["--prompt", "walk", "--frames", "-8"], ["196"]),
    (["--prompt", "walk", "--frames", "200"], ["196"]),
    (["--prompt", "walk", "--frames", "2"], ["196"]),
    (["--prompt", "a", "--prompt", "b", "--prompt", "c", "--frames", "20", "--frames", "20"], ["3 prompts"]),
    (["--prompt", "walk", "--frames", "many"], ["invalid int"]),
    (["--prompt", "walk", "--steps", "0"], ["steps"]),
    (["--prompt", "walk", "--topk", "1.5"], ["topk"]),
    (["--prompt", "walk", "--device", "tpu"], ["device"]),
    (["--prompt", "walk", "--bogus"], ["unrecognized"]),
])
def test_bad_generate_input(tiny_weights, tmp_path, cli_main, extra, words) -> None:
    out = tmp_path / "out.npz"
    code, _, err = cli_main("generate", "--weights", tiny_weights, *extra, "--out", out)
    assert code == 2
    assert_one_line_error(err, *words)
    assert list(tmp_path.iterdir()) == []


def test_missing_out_folder_is_refused_before_work(tiny_weights, tmp_path, cli_main) -> None:
    code, _, err = cli_main("generate", "--weights", tiny_weights, "--prompt", "walk",
                                   "--out", tmp_path / "nowhere" / "out.npz")
    assert code == 2
    assert_one_line_error(err, "does not exist")


def test_long_prompt_is_truncated_with_a_warning(tiny_weights, tmp_path, cli_main) -> None:
    out = tmp_path / "out.npz"
    prompt = " ".join(["a person walks forward and then turns around slowly"] * 12)
    code, _, err = cli_main("generate", "--weights", tiny_weights, "--prompt", prompt,
                                   "--frames", "20", "--out", out)
    assert code == 0 and out.is_file()
    assert "77" in err and "warning" in err.lower()


def _broken_weights(tiny_weights: Path, tmp_path: Path) -> Path:
    root = tmp_path / "weights"
    shutil.copytree(tiny_weights, root)
    return root


MASK_DIR = "t2m/t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns"
VQ_CKPT = "t2m/rvq_nq6_dc512_nc512_noshare_qdp0.2/model/net_best_fid.tar"


class _Payload:
    """Pickles as a call to print: a checkpoint carrying code must be refused without running it."""

    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))


def _remove_mask_checkpoint(root: Path) -> None:
    (root / MASK_DIR / "model/latest.tar").unlink()


def _truncate_vq(root: Path) -> None:
    path = root / VQ_CKPT
    path.write_bytes(path.read_bytes()[:1000])


def _pickled_code(root: Path) -> None:
    torch.save({"vq_model": _Payload()}, root / VQ_CKPT)


def _mismatched_opt(root: Path) -> None:
    opt = root / MASK_DIR / "opt.txt"
    text = opt.read_text()
    assert "latent_dim: 64" in text
    opt.write_text(text.replace("latent_dim: 64", "latent_dim: 128"))


@pytest.mark.parametrize("damage", [_remove_mask_checkpoint, _truncate_vq, _pickled_code, _mismatched_opt],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_weights_exit_3(tiny_weights, tmp_path, cli_main, damage) -> None:
    root = _broken_weights(tiny_weights, tmp_path)
    damage(root)
    out = tmp_path / "out.npz"
    code, stdout, err = cli_main("generate", "--weights", root, "--prompt", "walk",
                                        "--frames", "20", "--out", out)
    assert code == 3
    assert_one_line_error(err)
    assert "PAYLOAD RAN" not in stdout + err
    assert not out.exists()


def test_missing_weights_folder_exits_3(tmp_path, cli_main) -> None:
    code, _, err = cli_main("generate", "--weights", tmp_path / "none", "--prompt",
                                   "walk", "--frames", "20", "--out", tmp_path / "out.npz")
    assert code == 3
    assert_one_line_error(err, "checkpoints")


def _save(tmp_path: Path, array: np.ndarray) -> Path:
    path = tmp_path / "src.npy"
    np.save(path, array)
    return path


@pytest.mark.parametrize(("make_source", "start", "end", "words"), [
    (lambda tmp, real: _save(tmp, real[:100, :200]), 0, 8, ["shape"]),
    (lambda tmp, real: _save(tmp, np.zeros((100, 22))), 0, 8, ["shape"]),
    (lambda tmp, real: _save(tmp, np.where(np.arange(263) == 7, np.nan, real[:100])), 0, 8, ["nan"]),
    (lambda tmp, real: _save(tmp, real[:100]), 90, 140, ["range"]),
    (lambda tmp, real: _save(tmp, real[:100]), 150, 160, ["range"]),
    (lambda tmp, real: _save(tmp, real[:100]), 40, 40, ["range"]),
    (lambda tmp, real: _save(tmp, real[:100]), -4, 10, ["range"]),
    (lambda tmp, real: tmp / "missing.npy", 0, 8, ["does not exist"]),
    (lambda tmp, real: (tmp / "text.npy").write_text("not numpy") and tmp / "text.npy", 0, 8, [".npy"]),
])
def test_bad_inpaint_input(tiny_weights, sample_features, tmp_path, cli_main, make_source, start, end,
                           words) -> None:
    source = make_source(tmp_path, sample_features)
    out = tmp_path / "out.npz"
    code, _, err = cli_main("inpaint", "--weights", tiny_weights, "--source", source,
                                   "--prompt", "a person kicks", "--start", str(start), "--end", str(end),
                                   "--out", out)
    assert code == 2
    assert_one_line_error(err, *words)
    assert not out.exists()


def test_existing_out_survives_a_failure(tiny_weights, tmp_path, cli_main) -> None:
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous result")
    code, _, _ = cli_main("generate", "--weights", tiny_weights, "--prompt", "walk",
                                 "--frames", "999", "--out", out)
    assert code == 2 and out.read_bytes() == b"previous result"


def test_frames_once_per_prompt(tiny_weights, tmp_path, cli_main) -> None:
    out = tmp_path / "out.npz"
    code, _, err = cli_main("generate", "--weights", tiny_weights, "--prompt", "walk",
                                   "--prompt", "run", "--frames", "20", "--frames", "48", "--out", out)
    assert code == 0, err
    with np.load(out) as data:
        assert data["lengths"].tolist() == [20, 48] and data["joints"].shape == (2, 48, 22, 3)


# --- compose (docs/compose.md): timelines, loops, continuations, regenerating a segment --------------------


def test_compose_a_timeline_end_to_end_then_regenerate_a_segment(tiny_weights, tmp_path) -> None:
    out = tmp_path / "take.npz"
    proc = run_cli("compose", "--weights", tiny_weights, "--segment", "a person walks", "3",
                   "--segment", "a person jumps", "2.5", "--segment", "a person waves", "auto",
                   "--fps", "24", "--seed", "3", "--steps", "2", "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        assert {"joints", "features", "tokens", "lengths", "fps", "segment_prompt", "segment_seed",
                "segment_start", "segment_end"} <= set(data.files)
        frames = int(data["lengths"][0])
        assert data["joints"].shape == (1, frames, 22, 3) and float(data["fps"]) == 24.0
        assert data["segment_start"].tolist()[:3] == [0, 72, 132] and data["segment_end"][-1] == frames
        assert data["segment_prompt"].tolist() == ["a person walks", "a person jumps", "a person waves"]
        tokens = data["tokens"][0]
    again = tmp_path / "again.npz"
    proc = run_cli("compose", "--weights", tiny_weights, "--regenerate", out, "--index", "0",
                   "--prompt", "a person runs", "--seed", "3", "--steps", "2", "--device", "cpu",
                   "--out", again)
    assert proc.returncode == 0, proc.stderr
    with np.load(again) as data:
        changed = np.nonzero(np.any(data["tokens"][0] != tokens, axis=1))[0]
        assert changed.max() < 17 and data["segment_prompt"][0] == "a person runs"
        np.testing.assert_array_equal(data["tokens"][0][17:], tokens[17:])


def test_compose_a_looped_timeline_file_and_a_continuation(tiny_weights, tmp_path, cli_main) -> None:
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"segments": [{"prompt": "a person walks", "seconds": 2},
                                                 {"prompt": "a person turns", "seconds": 2, "seed": 8}],
                                    "loop": True, "fps": 30}))
    out = tmp_path / "loop.npz"
    code, stdout, err = cli_main("compose", "--weights", tiny_weights, "--timeline", timeline, "--steps", "2",
                                 "--device", "cpu", "--out", out)
    assert code == 0, err
    with np.load(out) as data:
        assert data["lengths"][0] == 120 and data["loop_offset"].shape == (3,)
        assert data["segment_seed"][1] == 8
        source = data["joints"][0]
    source_npy = tmp_path / "source.npy"
    np.save(source_npy, source[:40].astype(np.float32))
    cont = tmp_path / "cont.npz"
    code, _, err = cli_main("compose", "--weights", tiny_weights, "--continue-from", source_npy,
                            "--prompt", "a person sits down", "--seconds", "2", "--steps", "2",
                            "--device", "cpu", "--out", cont)
    assert code == 0, err
    with np.load(cont) as data:
        assert data["lengths"][0] == 40 and data["joints"].shape == (1, 40, 22, 3)


@pytest.mark.parametrize("args, words", [
    ([], "give the timeline once"),
    (["--segment", "a", "0"], "lasts 0.0 s"),
    (["--segment", "a", "nan"], "lasts nan"),
    (["--segment", " ", "2"], "prompt is empty"),
    (["--segment", "a", "two"], "not a number"),
    (["--segment", "a", "200", "--segment", "b", "200"], "more than the maximum of 300 s"),
    (["--segment", "a", "2", "--segment", "b", "1", "--transition", "1.5"], "Segment 2 lasts 1 s"),
    (["--prompt", "a", "--seconds", "2", "--continue-from", "missing.npy"], "does not exist"),
])
def test_bad_compose_input_is_one_line_and_writes_nothing(tmp_path, cli_main, args, words) -> None:
    out = tmp_path / "x.npz"
    code, _, err = cli_main("compose", "--weights", tmp_path / "no-weights", *args, "--out", out)
    assert code == 2
    assert_one_line_error(err, words)
    assert not out.exists()


def test_regenerating_needs_a_composed_take(tiny_weights, tmp_path, cli_main) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, joints=np.zeros((1, 8, 22, 3)), tokens=np.zeros((1, 2, 6)), fps=20.0)
    code, _, err = cli_main("compose", "--weights", tiny_weights, "--regenerate", plain, "--index", "0",
                            "--out", tmp_path / "x.npz")
    assert code == 2
    assert_one_line_error(err, "no stored segments")
