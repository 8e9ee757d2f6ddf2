"""Install the built extension zip into real Blender (the bpy module), check it registers, uninstall it.

Run by tests/test_build.py (``run_blender(version, "build.py", ZIP)``): the Blender side of the build's
tests, not a build script. The caller points BLENDER_USER_RESOURCES at a temporary folder, so the
extension lands in a throwaway "User Default" repository and the real user configuration is never
touched. Its cases (``tests/blender/cases.py``) run in order, each needing the one before:
``install_enables_the_addon``, ``registers_operators_and_a_momask_panel``, ``uninstall_leaves_nothing``.
"""

import os
import sys
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
from cases import ARGS, MADE, case, check, finish, made


def classes_from(module: str, base: type) -> list[type]:
    """Registered subclasses of ``base`` defined by ``module`` (or its submodules)."""
    found, stack = [], list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__ == module or cls.__module__.startswith(module + "."):
            found.append(cls)
    return found


@case
def case_install_enables_the_addon():
    zip_path = Path(ARGS[0]).resolve()
    with zipfile.ZipFile(zip_path) as zf:
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    pkg_id = manifest["id"]
    user_dir = Path(bpy.utils.resource_path("USER")).resolve()
    sandbox = Path(os.environ.get("BLENDER_USER_RESOURCES", "/nonexistent")).resolve()
    check(user_dir == sandbox, f"user resources are {user_dir}, not the sandbox {sandbox}: refusing to touch "
          "a real config. Fix: set BLENDER_USER_RESOURCES to a temporary folder")
    repos = bpy.context.preferences.extensions.repos
    repo_index = next((i for i, r in enumerate(repos) if r.module == "user_default"), None)
    check(repo_index is not None, "no 'user_default' extension repository")
    repo_dir = Path(repos[repo_index].directory)
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True)
    check(result == {"FINISHED"}, f"package_install_files returned {result}")
    module = f"bl_ext.user_default.{pkg_id}"
    enabled = list(bpy.context.preferences.addons.keys())
    check(module in enabled, f"{module} is not enabled after install; enabled: {enabled}")
    check((repo_dir / pkg_id / "__init__.py").is_file() and (repo_dir / pkg_id / "backend").is_dir(),
          f"the package was not unpacked into {repo_dir / pkg_id}")
    MADE.update(pkg_id=pkg_id, module=module, repo_index=repo_index, repo_dir=repo_dir)
    return {"module": module, "package": str(repo_dir / pkg_id)}


@case
def case_registers_operators_and_a_momask_panel():
    (module,) = made("module")
    operators = MADE["operators"] = classes_from(module, bpy.types.Operator)
    panels = MADE["panels"] = classes_from(module, bpy.types.Panel)
    registered_ops = sorted(c.bl_idname for c in operators if c.is_registered)
    registered_panels = [c for c in panels if c.is_registered]
    check(registered_ops, "the add-on registered no operators")
    check(any(getattr(c, "bl_category", "") == "MoMask" for c in registered_panels),
          "no registered panel in the 'MoMask' tab of the 3D viewport sidebar")
    for idname in registered_ops:
        category, _, name = idname.partition(".")
        check(hasattr(getattr(bpy.ops, category), name),
              f"operator {idname} is not reachable as bpy.ops.{idname}")
    return {"operators": registered_ops, "panels": sorted(c.__name__ for c in registered_panels)}


@case
def case_uninstall_leaves_nothing():
    pkg_id, module, repo_index, repo_dir, operators, panels = made(
        "pkg_id", "module", "repo_index", "repo_dir", "operators", "panels")
    result = bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id=pkg_id)
    check(result == {"FINISHED"}, f"package_uninstall returned {result}")
    check(module not in bpy.context.preferences.addons, f"{module} is still enabled after uninstall")
    still = [c.__name__ for c in operators + panels if c.is_registered]
    check(not still, f"classes still registered after uninstall: {still}")
    check(not (repo_dir / pkg_id).exists(), f"{repo_dir / pkg_id} is still on disk after uninstall")


finish()
