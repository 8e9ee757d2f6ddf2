"""Shared fixtures: paths, tiny random weights made once per session, real-Blender runners.

Blender tests run in real Blender from PyPI (the ``bpy`` module) in their own virtual environments
(``.venv-bpy42`` for 4.2 LTS, the oldest the manifest allows and the only one with classic actions;
``.venv-bpy45`` for 4.5 LTS; ``.venv-bpy50`` for 5.0), made by ``python build.py setup``. A test
that needs one calls :func:`run_blender` with a script under ``tests/blender/``; the script exits
non-zero (with a message) when an assertion fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
                env: dict[str, str] | None = None) -> str:
    """Run ``tests/blender/<script>`` inside real Blender ``version``; return its stdout.

    Fails the calling test with the script's output when it exits non-zero.
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
    proc = subprocess.run(
        [str(blender_python(version)), str(script), *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode == SKIP_EXIT:
        pytest.skip(next((ln[len("SKIP: "):] for ln in proc.stdout.splitlines() if ln.startswith("SKIP: ")),
                         f"{script.name} found no real test data in {SHARED_DATA}"))
    if proc.returncode != 0:
        pytest.fail(
            f"Blender {version} script {script.name} failed (exit {proc.returncode}):\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


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
