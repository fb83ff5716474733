"""The one shader loader: GLSL files from ``shaders/``, with ``#include`` resolved, cached, raising on a miss.

The files live at the top of the repository; an installed wheel carries them as ``glnet/shaders``. Lookup
order: the wheel's copy, then the checkout's (a source tree or an editable install). A name that is found
in neither raises :class:`ShaderNotFoundError` listing where it looked; nothing falls back to a string.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

__all__ = ["ShaderNotFoundError", "load_shader", "shader_dirs"]

MAX_INCLUDE_DEPTH = 10
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)


class ShaderNotFoundError(FileNotFoundError):
    """A shader (or an ``#include``) names a file that is in none of the shader folders."""


def shader_dirs() -> list[Path]:
    """Folders searched for shaders, in order."""
    package = Path(__file__).resolve().parent.parent  # glnet/
    return [d for d in (package / "shaders", package.parent / "shaders") if d.is_dir()]


def _find(name: str) -> Path:
    for d in shader_dirs():
        p = (d / name).resolve()
        if p.is_file() and d.resolve() in p.parents:
            return p
    looked = ", ".join(str(d) for d in shader_dirs()) or "no shader folder found next to the glnet package"
    raise ShaderNotFoundError(f"shader {name!r} not found (looked in: {looked})")


def _expand(name: str, seen: set[str], depth: int) -> str:
    if depth > MAX_INCLUDE_DEPTH:
        raise RecursionError(f"#include nesting deeper than {MAX_INCLUDE_DEPTH} at {name!r}")
    text = _find(name).read_text(encoding="utf-8")

    def include(m: re.Match[str]) -> str:
        inc = m.group(1)
        if inc in seen:  # include guard: each file once per program
            return f"// --- already included: {inc} ---"
        seen.add(inc)
        body = _expand(inc, seen, depth + 1)
        return f'// --- start of "{inc}" ---\n{body}\n// --- end of "{inc}" ---'

    return _INCLUDE.sub(include, text)


@cache
def load_shader(name: str, defines: tuple[tuple[str, str], ...] = ()) -> str:
    """Source of ``shaders/<name>`` with includes expanded and ``#define``s inserted after ``#version``."""
    source = _expand(name, {name}, 0)
    if defines:
        lines = source.split("\n")
        at = next((i + 1 for i, ln in enumerate(lines) if ln.lstrip().startswith("#version")), 0)
        lines[at:at] = [f"#define {k} {v}" for k, v in defines]
        source = "\n".join(lines)
    return source
