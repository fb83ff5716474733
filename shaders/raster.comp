#version 430
// raster.comp: the compute rasterizer. One invocation per feature-map row of the current layer marches
// along the row (no index arithmetic per neuron), projects each neuron and atomicMin's a 32-bit key into
// every pixel its disc covers (sub-pixel neighbours landing in one pixel are merged before the atomic). key = view depth (the top 22 bits of the float: positive floats order as
// unsigned ints) | colour code (10 bits), so the nearest neuron wins and carries its colour; present.frag
// turns keys into pixels.
// Storage: s_values (binding 0, the layer's values as a range), s_keys (binding 1, width * height keys).
#include "common/camera.glsl"
#include "common/layer.glsl"
#include "common/colormap.glsl"

layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer Values { float s_values[]; };
layout(std430, binding = 1) buffer Keys { uint s_keys[]; };

void splat(Splat s, uint key) {
    ivec2 size = ivec2(u_viewport);
    ivec2 c = min(ivec2(floor(s.centre)), size - 1);
    if (s.radius <= 0.5) {
        atomicMin(s_keys[c.y * size.x + c.x], key);
        return;
    }
    ivec2 lo = max(ivec2(ceil(s.centre - s.radius - 0.5)), ivec2(0));
    ivec2 hi = min(ivec2(floor(s.centre + s.radius - 0.5)), size - 1);
    for (int y = lo.y; y <= hi.y; ++y) {
        for (int x = lo.x; x <= hi.x; ++x) {
            if (splat_covers(vec2(x, y) + 0.5, s.centre, s.radius)) atomicMin(s_keys[y * size.x + x], key);
        }
    }
}

void main() {
    uint row = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x
               + gl_LocalInvocationID.x;
    uint width = u_grid.z;
    if (row * width >= u_count) return;
    uint first = row * width;
    vec2 start = neuron_cell(first);
    ivec2 size = ivec2(u_viewport);
    // Neighbours along a row often land in the same pixel: keep their smallest key and write it once.
    int pending = -1;
    uint best = 0xFFFFFFFFu;
    for (uint k = 0u; k < width; ++k) {
        Splat s = project_cell(vec2(start.x + float(k), start.y));
        if (!s.visible) continue;
        uint key = (floatBitsToUint(s.w) & 0xFFFFFC00u) | colour_code(s_values[first + k]);
        if (s.radius > 0.5) {
            splat(s, key);
            continue;
        }
        ivec2 c = min(ivec2(floor(s.centre)), size - 1);
        int at = c.y * size.x + c.x;
        if (at != pending) {
            if (pending >= 0) atomicMin(s_keys[pending], best);
            pending = at;
            best = key;
        } else {
            best = min(best, key);
        }
    }
    if (pending >= 0) atomicMin(s_keys[pending], best);
}
