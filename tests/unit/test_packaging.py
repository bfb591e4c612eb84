"""requirements.txt (what `chalice package` ships) against pyproject and against what the app
imports.

`chalice package` pip-installs requirements.txt into the deployment package and adds
app.py, chalicelib/ and chalice's own chalice/__init__.py and chalice/app.py; the Lambda
runtime adds boto3 and botocore. Anything else the app imports must come from
requirements.txt (directly, or as a dependency pip pulls in).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import json
import subprocess
import sys
import sysconfig
import tomllib
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"app", "chalicelib"}
# The Lambda Python runtime includes boto3 (and so botocore and their dependencies).
LAMBDA_PROVIDED = {"boto3", "botocore"}
# `chalice package` copies these two files of chalice into the package, nothing else.
CHALICE_SHIPPED = {"chalice", "chalice.app"}
# Imported at import time only if installed, with a fallback; fine to be absent on Lambda.
OPTIONAL_IMPORTS = {
    # pynamodb.signals: "Implements signals based on blinker if available, otherwise falls
    # silently back to a noop"; chalicelib uses no signals (test_no_pynamodb_signals).
    "blinker",
    # botocore.httpsession: `try: from certifi import where`, else botocore's own CA bundle.
    "certifi",
}
TOOLS = "cadenza_tools"
TOOL_MODULES = ("cli", "local", "infra")
NOT_SHIPPED = {"moto", "typer", "rich", "requests", "localstack-client", "chalice", "boto3"}


def _requirements_txt() -> list[Requirement]:
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(Requirement(line))
    return out


def _pyproject_dependencies() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def test_requirements_match_pyproject_dependencies() -> None:
    """The runtime dependencies are exactly what ships: the tools' go to an extra."""
    deps = _pyproject_dependencies()
    reqs = _requirements_txt()
    assert reqs, "requirements.txt is empty"
    names = [canonicalize_name(r.name) for r in reqs]
    assert len(names) == len(set(names)), f"duplicates in requirements.txt: {names}"
    assert set(names) == set(deps), f"pyproject dependencies != requirements.txt: {sorted(deps)}"
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in deps, f"{req} is in requirements.txt but not in pyproject dependencies"
        dep = deps[name]
        assert req.specifier == dep.specifier, f"requirements.txt {req} != pyproject {dep}"
        assert req.extras == dep.extras, f"requirements.txt {req} != pyproject {dep}"
        assert req.marker == dep.marker, f"requirements.txt {req} != pyproject {dep}"


def test_requirements_leave_out_what_lambda_does_not_need() -> None:
    names = {canonicalize_name(r.name) for r in _requirements_txt()}
    assert not names & {canonicalize_name(n) for n in NOT_SHIPPED | LAMBDA_PROVIDED}


def test_tools_live_outside_the_shipped_package() -> None:
    """`chalice package` ships app.py and chalicelib/ whole: the CLI, the local stack and the
    infra generator live in cadenza_tools/, which neither imports nor contains."""
    shipped = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
    for path in shipped:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        tools = {i for i in _imports(path, module) if _top(i) == TOOLS}
        assert not tools, f"{path.relative_to(ROOT)} imports {sorted(tools)}"
    for name in TOOL_MODULES:
        assert _module_file(f"chalicelib.{name}") is None, f"chalicelib.{name} would ship"
        assert _module_file(f"{TOOLS}.{name}") is not None, name
    assert not any(_top(n) == TOOLS for n in _loaded_modules()), "import app loads the tools"


# ---- what `import app` loads --------------------------------------------------------------

_PROBE = """
import json, sys
before = set(sys.modules)  # the interpreter's start-up (site, encodings, path hooks)
sys.path.insert(0, sys.argv[1])
import app  # noqa: F401
new = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if n not in before}
print(json.dumps(new))
"""


@cache
def _loaded_modules() -> dict[str, str | None]:
    """What `import app` adds to sys.modules, in a fresh interpreter (pytest and the test
    suite import plenty the app does not)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: dict[str, str | None] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


def _top(name: str) -> str:
    return name.split(".", 1)[0]


_STDLIB_DIRS = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")}
_SITE_DIRS = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}


def _is_stdlib(name: str, file: str | None = None) -> bool:
    if _top(name) in sys.stdlib_module_names or _top(name) in sys.builtin_module_names:
        return True
    if file is None:  # e.g. _sysconfigdata_*: in the stdlib directory, not in the list
        return False
    path = Path(file).resolve()
    in_site = any(path.is_relative_to(d) for d in _SITE_DIRS)
    return not in_site and any(path.is_relative_to(d) for d in _STDLIB_DIRS)


def _is_first_party(name: str) -> bool:
    return _top(name) in FIRST_PARTY


@cache
def _distributions_of(top: str) -> frozenset[str]:
    return frozenset(canonicalize_name(d) for d in md.packages_distributions().get(top, []))


def _closure(roots: list[Requirement]) -> set[str]:
    """Every distribution pip installs for ``roots`` (as installed here), extras included."""
    seen: set[str] = set()
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in md.requires(name) or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return seen


def test_every_module_app_loads_is_shipped_or_provided() -> None:
    loaded = _loaded_modules()
    shipped = _closure(_requirements_txt())
    provided = _closure([Requirement(n) for n in LAMBDA_PROVIDED])
    missing: dict[str, set[str]] = {}
    for name, file in loaded.items():
        if _is_stdlib(name, file) or _is_first_party(name) or name in ("__main__", "__mp_main__"):
            continue
        top = _top(name)
        if top == "chalice":
            assert name in CHALICE_SHIPPED, f"{name}: `chalice package` ships only chalice.app"
            continue
        if top in OPTIONAL_IMPORTS:
            continue
        dists = _distributions_of(top)
        assert dists, f"{name}: no installed distribution provides it"
        if not dists & (shipped | provided):
            missing.setdefault(", ".join(sorted(dists)), set()).add(name)
    assert not missing, f"import app loads modules requirements.txt does not ship: {missing}"


# ---- what chalicelib imports, at module level or inside functions ------------------------


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (
        ROOT.joinpath(*parts).with_suffix(".py"),
        ROOT.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names imported anywhere in ``path`` except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(
                f"{prefix}.{a.name}" for a in node.names if _is_module(f"{prefix}.{a.name}")
            )
    return found


def _is_module(name: str) -> bool:
    """``from package import name``: is ``package.name`` a module (not an attribute)?"""
    if _is_first_party(name):
        return _module_file(name) is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@cache
def _first_party_imports() -> dict[str, set[str]]:
    """Module -> what it imports, for every first-party module app.py reaches: those in
    sys.modules after `import app`, and those reached from them by imports inside
    functions (which sys.modules does not show)."""
    todo = [n for n in _loaded_modules() if _is_first_party(n)]
    graph: dict[str, set[str]] = {}
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in graph or path is None:
            continue
        graph[name] = _imports(path, name)
        todo.extend(i for i in graph[name] if _is_first_party(i) and i not in graph)
    return graph


def test_first_party_imports_need_only_requirements() -> None:
    """Imports anywhere in app.py's modules, inside functions too, come from requirements.txt
    (or what pip installs for it: chalicelib.domain.schedules uses pydantic_core, which
    pydantic pins)."""
    shipped = _closure(_requirements_txt())
    graph = _first_party_imports()
    assert "app" in graph and "chalicelib.entrypoints.handlers" in graph
    problems = []
    for module, imports in sorted(graph.items()):
        for name in sorted(imports):
            top = _top(name)
            if _is_stdlib(name) or _is_first_party(name) or top in LAMBDA_PROVIDED:
                continue
            if top == "chalice":
                if name not in CHALICE_SHIPPED:
                    problems.append(f"{module} imports {name}; only chalice.app is shipped")
                continue
            if not _distributions_of(top) & shipped:
                problems.append(f"{module} imports {name}, not from a requirements.txt package")
    assert not problems, "\n".join(problems)


def test_zoneinfo_users_ship_tzdata() -> None:
    """zoneinfo needs a time-zone database; Lambda images need not have one."""
    uses = [m for m, imports in _first_party_imports().items() if "zoneinfo" in imports]
    if uses:
        assert "tzdata" in {canonicalize_name(r.name) for r in _requirements_txt()}, uses


def test_no_pynamodb_signals() -> None:
    """blinker is left out of requirements.txt because nothing uses PynamoDB's signals."""
    for module, imports in _first_party_imports().items():
        assert not any(i.startswith("pynamodb.signals") for i in imports), module
    for path in (ROOT / "chalicelib").rglob("*.py"):
        text = path.read_text()
        assert "pre_dynamodb_send" not in text and "post_dynamodb_send" not in text, path
