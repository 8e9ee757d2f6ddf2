"""Install the built extension zip into real Blender (the bpy module), check it registers, uninstall it.

Usage (from tests/test_build.py through ``run_blender``)::

    <bpy python> tests/blender/install_extension.py dist/momask-X.Y.Z.zip

The caller points BLENDER_USER_RESOURCES at a temporary folder, so the extension lands in a throwaway
"User Default" repository and the real user configuration is never touched. Exits non-zero with a
message on the first failed check.
"""

import os
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy


def fail(message: str) -> None:
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def classes_from(module: str, base: type) -> list[type]:
    """Registered subclasses of ``base`` defined by ``module`` (or its submodules)."""
    found, stack = [], list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__ == module or cls.__module__.startswith(module + "."):
            found.append(cls)
    return found


def main() -> None:
    zip_path = Path(sys.argv[1]).resolve()
    with zipfile.ZipFile(zip_path) as zf:
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    pkg_id = manifest["id"]

    user_dir = Path(bpy.utils.resource_path("USER")).resolve()
    sandbox = Path(os.environ.get("BLENDER_USER_RESOURCES", "/nonexistent")).resolve()
    if user_dir != sandbox:
        fail(f"user resources are {user_dir}, not the sandbox {sandbox}: refusing to touch a real config")

    repos = bpy.context.preferences.extensions.repos
    repo_index = next((i for i, r in enumerate(repos) if r.module == "user_default"), None)
    if repo_index is None:
        fail("no 'user_default' extension repository")
    repo_dir = Path(repos[repo_index].directory)

    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True)
    if result != {"FINISHED"}:
        fail(f"package_install_files returned {result}")
    module = f"bl_ext.user_default.{pkg_id}"
    if module not in bpy.context.preferences.addons:
        fail(f"{module} is not enabled after install; enabled: {list(bpy.context.preferences.addons.keys())}")
    if not (repo_dir / pkg_id / "__init__.py").is_file() or not (repo_dir / pkg_id / "backend").is_dir():
        fail(f"the package was not unpacked into {repo_dir / pkg_id}")

    operators = classes_from(module, bpy.types.Operator)
    panels = classes_from(module, bpy.types.Panel)
    registered_ops = [c.bl_idname for c in operators if c.is_registered]
    registered_panels = [c for c in panels if c.is_registered]
    print(f"operators: {sorted(registered_ops)}")
    print(f"panels: {sorted(c.__name__ for c in registered_panels)}")
    if not registered_ops:
        fail("the add-on registered no operators")
    if not any(getattr(c, "bl_category", "") == "MoMask" for c in registered_panels):
        fail("no registered panel in the 'MoMask' tab of the 3D viewport sidebar")
    for idname in registered_ops:
        category, _, name = idname.partition(".")
        if not hasattr(getattr(bpy.ops, category), name):
            fail(f"operator {idname} is not reachable as bpy.ops.{idname}")

    result = bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id=pkg_id)
    if result != {"FINISHED"}:
        fail(f"package_uninstall returned {result}")
    if module in bpy.context.preferences.addons:
        fail(f"{module} is still enabled after uninstall")
    still = [c.__name__ for c in operators + panels if c.is_registered]
    if still:
        fail(f"classes still registered after uninstall: {still}")
    if (repo_dir / pkg_id).exists():
        fail(f"{repo_dir / pkg_id} is still on disk after uninstall")
    print(f"OK: installed, registered {len(registered_ops)} operators and {len(registered_panels)} panels, "
          "uninstalled cleanly")


main()
