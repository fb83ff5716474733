"""``glnet info``: the OpenGL driver and its limits, the EGL devices glnet can render on, CUDA-GL interop."""

from __future__ import annotations

import argparse

__all__ = ["cmd_info"]


def cmd_info(args: argparse.Namespace) -> int:
    """Print the GL driver, its limits, the EGL devices and whether CUDA-GL interop can work."""
    from .gpu.context import GLContext, configure_platform
    from .gpu.egl import device_report
    from .gpu.interop import interop_status

    configure_platform(headless=True)
    with GLContext.offscreen() as ctx:
        i = ctx.info
        print(f"OpenGL     {i.version}")
        print(f"renderer   {i.renderer} ({i.vendor}){' [software]' if i.software else ''}")
        print(f"GLSL       {i.glsl}")
        print(
            f"compute    {'yes' if i.compute else 'no'}; max texture {i.max_texture_size}; "
            f"max SSBO {i.max_ssbo_block_size >> 20} MiB"
        )
        print(f"display    {ctx.egl_device_why}")
    print("\n".join(device_report(ctx.egl_device)))
    ok, why = interop_status()
    print(f"cuda-gl    {'available' if ok else 'unavailable: ' + why}")
    print("\n".join(monitor_lines()))
    return 0


def monitor_lines() -> list[str]:
    """One line per monitor (``--screen`` takes its index): name, native mode, position, content scale."""
    from .errors import GLUnavailableError
    from .gpu.context import has_display

    if not has_display():
        return ["monitors   none (no display)"]
    from .window import monitors

    try:
        found = monitors()
    except GLUnavailableError as e:
        return [f"monitors   none ({e})"]
    return [f"monitor    {m.describe()}" for m in found] or ["monitors   none reported by GLFW"]
