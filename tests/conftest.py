"""Shared fixtures: paths, tiny random weights made once per session, real-Blender runners.

Blender tests run in real Blender from PyPI (the ``bpy`` module) in their own virtual environments
(``.venv-bpy42`` for 4.2 LTS, the oldest the manifest allows and the only one with classic actions;
``.venv-bpy45`` for 4.5 LTS; ``.venv-bpy50`` for 5.0), made by ``python build.py setup``. A test
that needs one calls :func:`run_blender` with a script under ``tests/blender/`` (the same name as the
test file without ``test_``) and asserts on the JSON document the script writes (tests/blender/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOMASK_SHARED_DATA", REPO.parent / "shared" / "data"))
#: The real test data: the HumanML3D clip 000612 (199 frames of de-normalised 263-D features) and the
#: official 22-joint ``template.bvh``. Not in the repository; tests that need it skip without it.
SHARED_DATA_FILES = ("humanml3d_000612.npy", "template.bvh")
#: Exit code of a ``tests/blender/`` script whose real test data is absent (``rigs.shared_file``).
SKIP_EXIT = 75
BLENDER_VENVS = {"4.2": REPO / ".venv-bpy42", "4.5": REPO / ".venv-bpy45", "5.0": REPO / ".venv-bpy50"}
BLENDER_VERSIONS = tuple(BLENDER_VENVS)


def blender_python(version: str) -> Path:
    """The interpreter that has ``bpy==<version>`` installed (fails loudly if setup was skipped)."""
    exe = BLENDER_VENVS[version] / "bin" / "python"
    if not exe.exists():
        pytest.fail(f"No Blender {version} environment at {exe}; run `python build.py setup`.")
    return exe


def run_blender(version: str, script: str | Path, *args: str, timeout: float = 600,
                env: dict[str, str] | None = None, result_json: bool = True) -> dict | str:
    """Run ``tests/blender/<script>`` inside real Blender ``version`` with ``args`` and return the JSON
    document it wrote (``tests/blender/cases.py``; tests/blender/README.md has the convention).

    The path for that document is appended as the script's last argument. A script that exits without
    writing it (a crash, an exception outside a case) fails the calling test with the tail of its
    stderr and stdout; so does a non-zero exit when the document reports no failed case (the wrapper
    reports failed cases itself, with their messages: :func:`passed_case`, :func:`assert_cases_passed`).
    ``result_json=False`` runs a script that writes no document and returns its stdout (fails on a
    non-zero exit).
    """
    script = Path(script)
    if not script.is_absolute():
        script = REPO / "tests" / "blender" / script
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")])
    full_env["MOMASK_REPO"] = str(REPO)
    full_env["MOMASK_SHARED_DATA"] = str(SHARED_DATA)
    full_env["MOMASK_BACKEND_PYTHON"] = sys.executable
    full_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="momask_blender_result_") as folder:
        result_path = Path(folder) / f"{script.stem}.json"
        argv = [str(blender_python(version)), str(script), *args]
        if result_json:
            argv.append(str(result_path))
        proc = subprocess.run(argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == SKIP_EXIT:
            reasons = [ln[len("SKIP: "):] for ln in proc.stdout.splitlines() if ln.startswith("SKIP: ")]
            pytest.skip(reasons[0] if reasons else f"{script.name} found no real test data in {SHARED_DATA}")

        def failure(problem: str) -> str:
            return (f"Blender {version} script {script.name} {problem} (exit {proc.returncode}):\n"
                    f"--- stderr (tail) ---\n{proc.stderr[-6000:]}\n"
                    f"--- stdout (tail) ---\n{proc.stdout[-3000:]}")

        if not result_json:
            if proc.returncode != 0:
                pytest.fail(failure("failed"))
            return proc.stdout
        if not result_path.exists():
            pytest.fail(failure("wrote no results"))
        doc = json.loads(result_path.read_text())
    cases = doc.get("cases", []) if isinstance(doc, dict) else []
    if proc.returncode != 0 and all(c.get("passed") for c in cases):
        pytest.fail(failure("exited with an error although no case failed"))
    return doc


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of the real test data; the test is skipped (naming what is missing) without it."""
    missing = [name for name in SHARED_DATA_FILES if not (SHARED_DATA / name).is_file()]
    if missing:
        pytest.skip(f"real test data missing: {', '.join(missing)} not in {SHARED_DATA}. Put the HumanML3D "
                    "clip 000612 (humanml3d_000612.npy) and the official template.bvh there, or point "
                    "MOMASK_SHARED_DATA at a folder that holds them.")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_features(shared_data):
    """The real HumanML3D clip 000612: 199 frames of de-normalised 263-D features (float64, read-only)."""
    import numpy as np

    features = np.load(shared_data / "humanml3d_000612.npy")
    features.flags.writeable = False
    return features


@pytest.fixture(scope="session")
def sample_joints(sample_features):
    """Its 22 joints (199, 22, 3) as ``recover_from_ric`` gives them (float32, read-only)."""
    from backend.motion.features import recover_from_ric

    joints = recover_from_ric(sample_features)
    joints.flags.writeable = False
    return joints


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-initialised tiny checkpoints (and CLIP) in the exact official layout, made once."""
    from backend.weights.random_weights import make_test_weights

    root = tmp_path_factory.mktemp("tiny_weights")
    make_test_weights(root, size="tiny", seed=0)
    return root


@pytest.fixture(scope="module")
def small_transformers():
    """(masked, residual) transformers with small random weights, in eval mode (CLIP dim 512)."""
    import torch

    from backend.models.masked_transformer import MaskTransformer
    from backend.models.residual_transformer import ResidualTransformer

    torch.manual_seed(0)
    mask = MaskTransformer(code_dim=32, latent_dim=32, ff_size=64, num_layers=2, num_heads=2, clip_dim=512)
    residual = ResidualTransformer(code_dim=32, latent_dim=32, ff_size=64, num_layers=2, num_heads=2,
                                   clip_dim=512)
    return mask.eval(), residual.eval()


def sample_tokens(small_transformers, flow, lengths: list[int], seed: int = 0, steps: int = 10,
                  gumbel: bool = False, reporter=None, cond_scale: float = 4.0):
    """Base then residual tokens (b, n, 6) for random text features, the way the pipeline runs the
    samplers (shared by the sampler and accelerator tests). ``flow`` is a ``sampling.Flow``."""
    import torch

    from backend.inference import sampling

    mask, residual = small_transformers
    cond = torch.randn(len(lengths), 512, generator=torch.Generator().manual_seed(123))
    lens = torch.tensor(lengths)
    seq_len = max(lengths)
    padding = sampling.padding_mask_for(lens, seq_len)
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        base_logits = flow.base_logits(mask, cond, padding, cond_scale)
        base = sampling.masked_generate(base_logits, lens, seq_len, steps, generator=generator, gumbel=gumbel,
                                        reporter=reporter)
        embed, proj = residual.tied_weights()
        residual_logits = flow.residual_logits(residual, cond, padding, 5.0, proj)
        return sampling.residual_generate(residual_logits, embed, base, lens, generator=generator,
                                          reporter=reporter)


@pytest.fixture()
def windows(monkeypatch, pipeline) -> list[int]:
    """Motion tokens of every transformer pass of ``pipeline`` (the test module's): the sequence minus
    its text token (masked transformer) or its text and layer tokens (residual transformer)."""
    seen: list[int] = []
    from backend.inference import fast_transformer

    original = fast_transformer.encoder_forward
    masked = pipeline.models.mask_transformer.seqTransEncoder

    def recording(encoder, sequence, attention_bias):
        seen.append(int(sequence.shape[1]) - (1 if encoder is masked else 2))
        return original(encoder, sequence, attention_bias)

    monkeypatch.setattr(fast_transformer, "encoder_forward", recording)
    return seen


class DrawRecorder:
    """Records every torch.multinomial and Tensor.uniform_ call (kind, shape), in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torch

        self.calls: list[tuple[str, tuple[int, ...]]] = []
        multinomial, uniform = torch.multinomial, torch.Tensor.uniform_

        def record_multinomial(probs, *args, **kwargs):
            self.calls.append(("multinomial", tuple(probs.shape)))
            return multinomial(probs, *args, **kwargs)

        def record_uniform(tensor, *args, **kwargs):
            self.calls.append(("uniform_", tuple(tensor.shape)))
            return uniform(tensor, *args, **kwargs)

        monkeypatch.setattr(torch, "multinomial", record_multinomial)
        monkeypatch.setattr(torch.Tensor, "uniform_", record_uniform)


def _case_failure(doc: dict, case: dict) -> str:
    return (f"Blender {doc.get('blender')}, {doc.get('script')}, case {case['name']}: {case['message']}\n"
            f"{case.get('traceback', '')}")


def passed_case(doc: dict, name: str) -> dict:
    """The case ``name`` of a Blender script's results (:func:`run_blender`), which must have run and
    passed (else the test fails with the case's message); its measured values are ``["values"]``."""
    found = {c["name"]: c for c in doc["cases"]}
    assert name in found, f"case {name} did not run in Blender {doc.get('blender')}; ran: {sorted(found)}"
    if "skipped" in found[name]:
        pytest.skip(found[name]["skipped"])
    assert found[name]["passed"], _case_failure(doc, found[name])
    return found[name]


def assert_cases_passed(doc: dict, expected: set[str]) -> dict[str, dict]:
    """Exactly the ``expected`` cases ran and every one passed (the failing ones' messages otherwise);
    returns them by name."""
    found = {c["name"]: c for c in doc["cases"]}
    missing, unexpected = sorted(expected - found.keys()), sorted(found.keys() - expected)
    assert not missing and not unexpected, (f"Blender {doc.get('blender')}, {doc.get('script')}: cases "
                                            f"missing {missing}, unexpected {unexpected}")
    failed = [_case_failure(doc, c) for c in found.values() if not c["passed"]]
    assert not failed, "\n".join(failed)
    return found
