"""Checks that dvc.yaml matches the code it runs, read generically from whatever stages dvc.yaml has.

DVC reruns a stage only when one of its declared deps or params changes. A stage whose code imports a
module that is not among its deps, or reads a param it does not list, silently keeps stale outputs
when that module or param changes; one that lists what it never uses reruns for nothing.

- `check_imports(repo)`: each stage's script (the `*.py` path in its raw `cmd`, templates included),
  the transitive closure of its project imports by AST, against the stage's `.py` deps.
- `check_params_trace(repo, trace_file)`: the params each stage process actually read (recorded with
  TRANSFERLM_PARAMS_TRACE, see tests/hooks/params_trace.py) against the stage's `params:` list.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_PARAMS_FILE = "params.yaml"
TEMPLATE = re.compile(r"\$\{[^}]*\}")
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<"}


@dataclass(frozen=True)
class Stage:
    name: str  # the key in dvc.yaml: a matrix or foreach stage once, not once per item
    cmd: str  # raw, with ${...} templates left in
    wdir: str
    deps: tuple[str, ...]
    params: tuple[str, ...] | None  # keys of params.yaml; None when the whole file is listed

    def script(self) -> str | None:
        """The stage's Python script relative to the repository root: the first `*.py` in its cmd, or the
        file of `python -m module` (a module under src/)."""
        tokens = self.tokens()
        return tokens[0] if tokens else None

    def tokens(self) -> list[str]:
        """[script, arg, ...]: the script invocation's tokens, up to the first shell operator."""
        words = shlex.split(self.cmd)
        for i, word in enumerate(words):
            if word == "-m" and i + 1 < len(words):  # python -m pkg.mod: sys.argv[0] is the module's file
                word = str(Path("src", *words[i + 1].split("."))) + ".py"
                words[i + 1] = word
                continue
            if word.endswith(".py") and not TEMPLATE.search(word):
                rest = []
                for arg in words[i + 1 :]:
                    if arg in SHELL_OPERATORS:
                        break
                    rest.append(arg)
                return [os.path.normpath(os.path.join(self.wdir, word)), *rest]
        return []


def load_stages(repo: Path) -> list[Stage]:
    doc = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8")) or {}
    stages = []
    for name, spec in (doc.get("stages") or {}).items():
        body = spec.get("do", spec) if "foreach" in spec else spec
        cmd = body.get("cmd", "")
        cmd = " && ".join(cmd) if isinstance(cmd, list) else cmd
        deps = tuple(d if isinstance(d, str) else next(iter(d)) for d in body.get("deps") or [])
        stages.append(Stage(name, cmd, body.get("wdir", "."), deps, _param_keys(body.get("params") or [])))
    return stages


def _param_keys(entries: list) -> tuple[str, ...] | None:
    keys = []
    for entry in entries:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            for file, file_keys in entry.items():
                if file != DEFAULT_PARAMS_FILE:
                    continue  # another params file: not what load_params() reads
                if not file_keys:
                    return None  # `- params.yaml:` alone: every key in the file
                keys.extend(file_keys)
    return tuple(k for k in keys if not TEMPLATE.search(k))


# ------------------------------------------------------------------------------------------ imports


def project_packages(repo: Path) -> set[str]:
    """Top-level packages under src/: imports of these are the project's, all others are libraries."""
    src = repo / "src"
    return {p.parent.name for p in src.glob("*/__init__.py")} if src.is_dir() else set()


def import_closure(repo: Path, script: str) -> dict[str, str | None]:
    """{repo-relative file: the file that first imported it} for `script` and everything it imports.

    Counts imports at any depth (a function's imports run when it is called), not those under
    `if TYPE_CHECKING:` (never run). A script's own folder is on sys.path, so `import helper` next to
    it counts too. Dynamic imports (importlib.import_module) are not seen.
    """
    packages = project_packages(repo)
    found: dict[str, str | None] = {script: None}
    todo = [script]
    module = _module_name(script)
    if module:  # `python -m a.b.c` imports the packages a and a.b first
        for path in _files_for(repo, module.rpartition(".")[0], [], packages, Path(script).parent):
            found.setdefault(path, script)
            todo.append(path)
    while todo:
        current = todo.pop()
        tree = ast.parse((repo / current).read_text(encoding="utf-8"), filename=current)
        for module, names in _imports(tree, _module_name(current)):
            for path in _files_for(repo, module, names, packages, Path(script).parent):
                if path not in found:
                    found[path] = current
                    todo.append(path)
    return found


def check_imports(repo: Path) -> list[str]:
    """One line per stage dep drift: a project file imported but not a dep, or a `.py` dep never imported."""
    problems = []
    for stage in load_stages(repo):
        script = stage.script()
        if script is None or not (repo / script).is_file():
            if "python" in stage.cmd:
                problems.append(f"stage {stage.name}: cannot find the script of cmd {stage.cmd!r}")
            continue
        closure = import_closure(repo, script)
        deps = [os.path.normpath(os.path.join(stage.wdir, d)) for d in stage.deps if not TEMPLATE.search(d)]
        dirs = [d for d in deps if (repo / d).is_dir()]
        for path, importer in sorted(closure.items()):
            if path not in deps and not any(_under(path, d) for d in dirs):
                problems.append(f"stage {stage.name}: {path} is imported (by {importer}) but not in deps")
        for dep in deps:
            if dep.endswith(".py") and dep not in closure:
                problems.append(f"stage {stage.name}: {dep} is in deps but never imported by {script}")
            elif dep.startswith("src/") and dep in dirs and not any(_under(path, dep) for path in closure):
                problems.append(f"stage {stage.name}: {dep}/ is in deps but {script} imports nothing from it")
    return problems


def _imports(tree: ast.AST, current_module: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) for each import statement outside `if TYPE_CHECKING:` blocks."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the importing module's package
                base = current_module.split(".")[: -node.level]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _files_for(repo: Path, module: str, names: list[str], packages: set[str], script_dir: Path) -> list[str]:
    """The project files that `from module import names` (or `import module`) executes."""
    parts = module.split(".")
    if parts[0] not in packages:
        local = script_dir / f"{parts[0]}.py"
        return [local.as_posix()] if len(parts) == 1 and (repo / local).is_file() else []
    files = []
    # Importing a.b.c runs a/__init__.py and a/b/__init__.py first; `from a.b import c` may name a module.
    candidates = [parts[:i] for i in range(1, len(parts) + 1)] + [parts + [n] for n in names if n != "*"]
    for mod in candidates:
        base = Path("src", *mod)
        for path in (base / "__init__.py", base.with_suffix(".py")):
            if (repo / path).is_file():
                files.append(path.as_posix())
    return files


def _module_name(path: str) -> str:
    """transferlm.x for src/transferlm/x.py (the package itself for an __init__.py); '' outside src/."""
    p = Path(path)
    if p.parts[0] != "src":
        return ""
    parts = list(p.with_suffix("").parts[1:])
    # An __init__ module's package is itself: append a dummy so relative levels resolve from the package.
    return ".".join(parts[:-1] + ["__init__"]) if parts[-1] == "__init__" else ".".join(parts)


def _under(path: str, folder: str) -> bool:
    return folder in (".", "") or path.startswith(folder.rstrip("/") + "/")


# ------------------------------------------------------------------------------------------- params


def check_params_trace(repo: Path, trace_file: Path) -> list[str]:
    """Problems between the params each traced stage process read and the stage's `params:` in dvc.yaml.

    Each line of `trace_file` ({"argv": [...], "keys": [...]}) is matched to the stage whose cmd runs
    that script with those arguments (templates such as ${item.lr} match any one argument). The keys of
    all runs of one stage (every item of a matrix) are pooled. Reported: a key read but not covered by
    the stage's list (a listed `train` covers every `train.*`), a listed key never read (a listed
    section: not one of its keys read), and a trace line that no stage's cmd explains. Stages absent from
    the trace are not judged.
    """
    stages = [s for s in load_stages(repo) if s.script()]
    reads: dict[str, set[str]] = {}
    problems = []
    for line in Path(trace_file).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        argv = [_repo_relative(repo, record["argv"][0]), *record["argv"][1:]]
        matches = [s for s in stages if _matches(s.tokens(), argv)]
        if len(matches) != 1:
            what = "no stage" if not matches else f"several stages ({', '.join(s.name for s in matches)})"
            problems.append(f"{what} runs {' '.join(argv)}")
            continue
        reads.setdefault(matches[0].name, set()).update(record["keys"])
    for stage in stages:
        if stage.name not in reads or stage.params is None:
            continue
        read = reads[stage.name]
        for key in sorted(read):
            if not any(key == p or key.startswith(p + ".") for p in stage.params):
                problems.append(f"stage {stage.name}: reads {key} but does not list it in params")
        for listed in stage.params:
            if not any(k == listed or k.startswith(listed + ".") or listed.startswith(k + ".") for k in read):
                problems.append(f"stage {stage.name}: lists {listed} in params but never reads it")
    return problems


def _repo_relative(repo: Path, script: str) -> str:
    path = Path(script)
    if path.is_absolute():
        try:
            return os.path.normpath(path.resolve().relative_to(repo.resolve()))
        except ValueError:
            return script
    return os.path.normpath(script)


def _matches(template: list[str], argv: list[str]) -> bool:
    if len(template) != len(argv) or template[0] != argv[0]:
        return False
    for pattern, arg in zip(template[1:], argv[1:], strict=True):
        regex = ".+".join(re.escape(part) for part in TEMPLATE.split(pattern))
        if not re.fullmatch(regex, arg):
            return False
    return True


# ------------------------------------------------------------------------------------ generating the deps


def code_folder(path: str) -> str:
    """The dep that covers a library file: its concern's folder (src/pkg/concern/x.py -> src/pkg/concern);
    a file at the package's top level (src/pkg/__init__.py) or outside src/ stands for itself."""
    parts = Path(path).parts
    return Path(*parts[:3]).as_posix() if parts[0] == "src" and len(parts) > 3 else path


def sync_code_deps(repo: Path) -> int:
    """Rewrite each stage's code deps in dvc.yaml from its import closure: its script, then the folders of the
    library it imports from (src/<package>/<concern>, sorted; a module at a package's top level by itself),
    leaving data deps, comments and everything else as they are. Returns the number of stages changed.

        python tests/helpers/dvc_checks.py --fix
    """
    path = repo / "dvc.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    closures = {}
    for stage in load_stages(repo):
        script = stage.script()
        if script is not None and (repo / script).is_file():
            closure = import_closure(repo, script)
            closures[stage.name] = [script] + sorted({code_folder(p) for p in closure if p != script})
    changed, out, i, current = 0, [], 0, None
    while i < len(lines):
        line = lines[i]
        if re.match(r"^  [A-Za-z_][\w-]*:\s*$", line):
            current = line.strip()[:-1]
        if current in closures and re.match(r"^    deps:\s*$", line):
            out.append(line)
            i += 1
            items = []
            while i < len(lines) and re.match(r"^      - ", lines[i]):
                items.append(lines[i][len("      - "):].strip())
                i += 1
            code = [d for d in items if d.startswith("src/") or (d.endswith(".py") and d.startswith("stages/"))]
            data = [d for d in items if d not in code]
            if code != closures[current]:
                changed += 1
            out += [f"      - {d}" for d in closures[current] + data]
            continue
        out.append(line)
        i += 1
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return changed


if __name__ == "__main__":
    if sys.argv[1:] == ["--fix"]:
        print(f"{sync_code_deps(Path.cwd())} stage(s) updated in dvc.yaml")
    else:
        print(*check_imports(Path.cwd()) or ["dvc.yaml deps match the imports"], sep="\n")
