"""The package's layers: every import points down, and no module imports itself back.

Reads the imports of every module of suites/, tasks/ and collators/ from its source (module level and
inside functions: a deferred import is still a dependency) and fails on an import circle or on an
import that reaches up a layer. The layers, lowest first, are those of DESIGN.md and the subpackage
docstrings: tasks/ and collators/ (which know nothing of each other), suites/errors.py, the config,
the trainer callbacks, the outputs, the trainers, and the run (command line, launcher, runner).
"""

from __future__ import annotations

import ast
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("suites", "tasks", "collators")

# (module prefix, rank): a module may import modules of its own rank or lower. tasks and collators
# share rank 0 but may not import each other (checked separately).
LAYERS = [
    ("collators", 0), ("tasks", 0),
    ("suites.errors", 1),
    ("suites.config", 2),
    ("suites.callbacks", 3),
    ("suites.outputs", 4),
    ("suites", 5),  # the trainers: base, family, one module per family, modeling, checkpoints ...
    ("suites.run", 6),
    ("suites.export", 6),  # a command beside the run's: it reuses suites.run.merge (LoRA merge, staged output)
]


def module_names() -> dict[str, pathlib.Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """Project modules that `name` imports (relative imports resolved, `from pkg import mod` read as
    the module when mod is one)."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import suites.run.cli` -> the module; `os.path` -> nothing
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def rank(name: str) -> int:
    return max(((len(p), r) for p, r in LAYERS if name == p or name.startswith(p + ".")), default=(0, -1))[1]


def graph() -> dict[str, set[str]]:
    mods = module_names()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert all(rank(m) >= 0 for m in module_names())
    assert rank("suites.run.cli") == 6 and rank("suites.sft") == 5 and rank("suites.config.loader") == 2


def test_no_import_circle():
    assert cycles(graph()) == []


def test_imports_point_down():
    upward = [f"{m} -> {t}" for m, ts in graph().items() for t in sorted(ts) if rank(t) > rank(m)]
    assert upward == [], "imports that reach up a layer:\n" + "\n".join(upward)


def test_tasks_and_collators_know_nothing_of_each_other_or_of_suites():
    g = graph()
    bad = [f"{m} -> {t}" for m, ts in g.items() for t in ts
           if m.split(".")[0] in ("tasks", "collators") and t.split(".")[0] != m.split(".")[0]]
    assert bad == []


def test_the_checker_sees_circles_and_upward_imports(tmp_path):
    # the checks above would pass on an empty graph: show they catch what they look for
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(g) == [["a", "b", "c"]]
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ..run.cli import run\n")
    known = {"suites.config.loader", "suites.run.cli", "suites.run"}
    assert imports_of("suites.config.loader", path, known) == {"suites.run.cli"}
    assert rank("suites.run.cli") > rank("suites.config.loader")


def test_each_subpackage_says_what_it_may_import():
    for pkg in ("suites/config", "suites/run", "suites/outputs", "suites/callbacks"):
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text()))
        assert doc and "May import" in doc, pkg
    assert os.path.isfile(ROOT / "tasks" / "errors.py")


def test_launcher_cli_and_config_load_without_torch():
    # scripts/launch and `trainsuite` check their options and the config before torchrun starts or a model
    # loads: none may pay for importing torch/transformers (seconds, and bitsandbytes' import-time notices)
    import subprocess
    import sys

    code = ("import sys, suites.run.launch, suites.run.cli, suites.config, suites.config.training_fields; "
            "print(sorted(m for m in ('torch', 'transformers', 'bitsandbytes', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
