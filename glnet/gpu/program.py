"""Shader programs built from files in ``shaders/``, with uniforms set by name and type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .objects import GLObject
from .shaders import load_shader

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["MAX_DISPATCH_INVOCATIONS", "Program", "ShaderError", "plan_dispatch"]

MAX_DISPATCH_INVOCATIONS = 1 << 31  # per dispatch, so a shader's flat index (plus its base) fits 32 bits


def plan_dispatch(
    invocations: int, local_size: int, max_groups: tuple[int, ...]
) -> list[tuple[int, int, int]]:
    """Dispatches covering ``invocations``: ``(first invocation, groups x, groups y)`` each, within the
    driver's work-group counts (``GL_MAX_COMPUTE_WORK_GROUP_COUNT``) and ``MAX_DISPATCH_INVOCATIONS``."""
    if not 0 <= invocations < 1 << 32:
        raise ValueError(f"{invocations} invocations: a dispatch's indices must fit 32 bits")
    gx_max, gy_max = int(max_groups[0]), int(max_groups[1])
    if gx_max < 1 or gy_max < 1:
        raise ValueError(f"no compute work groups allowed ({max_groups})")
    cap = min(gx_max * gy_max, MAX_DISPATCH_INVOCATIONS // local_size)  # groups in one dispatch
    width = min(gx_max, cap)
    chunk = cap // width * width * local_size  # whole rows of groups, so no two dispatches overlap
    out = []
    for first in range(0, invocations, chunk):
        groups = -(-min(chunk, invocations - first) // local_size)
        gx = min(groups, width)
        rows, rest = divmod(groups, gx)
        out.append((first, gx, rows))
        if rest:  # the last, partial row of groups: no index past the run's last group
            out.append((first + rows * gx * local_size, rest, 1))
    return out


class ShaderError(RuntimeError):
    """A shader failed to compile or link; the message carries the driver's log and the file name."""


def _setters() -> dict[int, Any]:
    from OpenGL import GL

    def mat4(loc: int, v: Any) -> None:
        GL.glUniformMatrix4fv(loc, 1, GL.GL_TRUE, np.asarray(v, np.float32))

    return {
        GL.GL_FLOAT: lambda loc, v: GL.glUniform1f(loc, float(v)),
        GL.GL_FLOAT_VEC2: lambda loc, v: GL.glUniform2f(loc, *map(float, v)),
        GL.GL_FLOAT_VEC3: lambda loc, v: GL.glUniform3f(loc, *map(float, v)),
        GL.GL_FLOAT_VEC4: lambda loc, v: GL.glUniform4f(loc, *map(float, v)),
        GL.GL_INT: lambda loc, v: GL.glUniform1i(loc, int(v)),
        GL.GL_INT_VEC2: lambda loc, v: GL.glUniform2i(loc, *map(int, v)),
        GL.GL_INT_VEC3: lambda loc, v: GL.glUniform3i(loc, *map(int, v)),
        GL.GL_INT_VEC4: lambda loc, v: GL.glUniform4i(loc, *map(int, v)),
        GL.GL_UNSIGNED_INT: lambda loc, v: GL.glUniform1ui(loc, int(v)),
        GL.GL_UNSIGNED_INT_VEC2: lambda loc, v: GL.glUniform2ui(loc, *map(int, v)),
        GL.GL_UNSIGNED_INT_VEC3: lambda loc, v: GL.glUniform3ui(loc, *map(int, v)),
        GL.GL_UNSIGNED_INT_VEC4: lambda loc, v: GL.glUniform4ui(loc, *map(int, v)),
        GL.GL_BOOL: lambda loc, v: GL.glUniform1i(loc, int(bool(v))),
        GL.GL_FLOAT_MAT4: mat4,
        GL.GL_SAMPLER_2D: lambda loc, v: GL.glUniform1i(loc, int(v)),
    }


class Program(GLObject):
    """A linked program from shader files; ``set(name=value)`` converts by the uniform's declared type."""

    kind = "program"
    _label_namespace = 0x82E2  # GL_PROGRAM

    def __init__(
        self,
        ctx: GLContext,
        *,
        vertex: str | None = None,
        fragment: str | None = None,
        compute: str | None = None,
        defines: Mapping[str, object] | None = None,
        label: str = "",
    ) -> None:
        from OpenGL import GL

        stages = [
            (GL.GL_VERTEX_SHADER, vertex),
            (GL.GL_FRAGMENT_SHADER, fragment),
            (GL.GL_COMPUTE_SHADER, compute),
        ]
        stages = [(t, n) for t, n in stages if n]
        if not stages:
            raise ValueError("a program needs at least one shader file")
        defs = tuple(sorted((k, str(v)) for k, v in (defines or {}).items()))
        ctx.make_current()
        glo = GL.glCreateProgram()
        shaders = []
        try:
            for stage, name in stages:
                sh = GL.glCreateShader(stage)
                shaders.append(sh)
                GL.glShaderSource(sh, load_shader(name, defs))
                GL.glCompileShader(sh)
                if not GL.glGetShaderiv(sh, GL.GL_COMPILE_STATUS):
                    log = GL.glGetShaderInfoLog(sh).decode(errors="replace")
                    raise ShaderError(f"{name} failed to compile:\n{log}")
                GL.glAttachShader(glo, sh)
            GL.glLinkProgram(glo)
            if not GL.glGetProgramiv(glo, GL.GL_LINK_STATUS):
                log = GL.glGetProgramInfoLog(glo).decode(errors="replace")
                raise ShaderError(f"{', '.join(n for _, n in stages)} failed to link:\n{log}")
        except BaseException:
            GL.glDeleteProgram(glo)
            raise
        finally:
            for sh in shaders:
                GL.glDeleteShader(sh)
        super().__init__(ctx, glo, label or "+".join(n for _, n in stages))
        self._uniforms: dict[str, tuple[int, int]] = {}
        for i in range(GL.glGetProgramiv(glo, GL.GL_ACTIVE_UNIFORMS)):
            name, _size, typ = GL.glGetActiveUniform(glo, i)
            name = name.decode() if isinstance(name, bytes) else name
            name = name.removesuffix("[0]")
            self._uniforms[name] = (GL.glGetUniformLocation(glo, name), int(typ))
        self._set = _setters()
        if compute:
            size = np.zeros(3, np.int32)
            GL.glGetProgramiv(glo, GL.GL_COMPUTE_WORK_GROUP_SIZE, size)
            self.local_size = tuple(int(v) for v in size)

    def use(self) -> Program:
        from OpenGL import GL

        GL.glUseProgram(self.glo)
        return self

    def has(self, name: str) -> bool:
        return name in self._uniforms

    def set(self, **uniforms: object) -> Program:
        """Set uniforms of the program in use; names the compiler optimised away are skipped."""
        for name, value in uniforms.items():
            entry = self._uniforms.get(name)
            if entry is None:
                continue
            loc, typ = entry
            setter = self._set.get(typ)
            if setter is None:
                raise TypeError(f"uniform {name!r} has a GL type 0x{typ:x} glnet does not set")
            setter(loc, value)
        return self

    def dispatch(self, invocations: int) -> None:
        """Run at least ``invocations`` compute invocations as 2-D grids of work groups (program in use).

        Past the driver's work-group counts the run is split into several dispatches; each sets
        ``u_invocation_base``, and shaders rebuild the index with ``invocation_id()`` (``dispatch.glsl``).
        """
        from OpenGL import GL

        plan = plan_dispatch(invocations, self.local_size[0], self.ctx.info.max_compute_work_group_count)
        if len(plan) > 1 and not self.has("u_invocation_base"):
            raise ValueError(f"{invocations} invocations need several dispatches; {self.label} has no base")
        for first, gx, gy in plan:
            self.set(u_invocation_base=first)
            GL.glDispatchCompute(gx, gy, 1)
