#version 430
// raster.comp: the compute rasterizer. One invocation per row segment (a feature-map row, or a run of at
// most u_segment.x neurons of one) of the current layer's bound part marches along it (no index arithmetic
// per neuron), projects each neuron and atomicMin's a 32-bit key into
// every pixel its disc covers. key = view depth (the top 22 bits of the float: positive floats order as
// unsigned ints) | colour code (10 bits), so the nearest neuron wins and carries its colour; present.frag
// turns keys into pixels. Sub-pixel neighbours in a segment landing in one pixel are merged before the atomic.
// Storage: s_values (binding 0, one part of the layer's values as a range), s_keys (binding 1, width * height
// keys).
#include "common/camera.glsl"
#include "common/layer.glsl"
#include "common/colormap.glsl"

layout(local_size_x = 128) in;
#include "common/dispatch.glsl"
layout(std430, binding = 0) readonly buffer Values { float s_values[]; };
layout(std430, binding = 1) buffer Keys { uint s_keys[]; };

// Segment-wise merge: neighbours often land in the pixel of the one before; keep the smallest key, write once.
int g_pending = -1;
uint g_best = 0xFFFFFFFFu;

void merge(int at, uint key) {
    if (at != g_pending) {
        if (g_pending >= 0) atomicMin(s_keys[g_pending], g_best);
        g_pending = at;
        g_best = key;
    } else {
        g_best = min(g_best, key);
    }
}

int pixel_index(vec2 centre) {
    ivec2 size = ivec2(u_viewport);
    ivec2 c = min(ivec2(floor(centre)), size - 1);
    return c.y * size.x + c.x;
}

uint neuron_key(float w, uint i) {
    return (floatBitsToUint(w) & 0xFFFFFC00u) | colour_code(s_values[i]);
}

void splat(Splat s, uint key) {
    ivec2 size = ivec2(u_viewport);
    ivec2 lo = max(ivec2(ceil(s.centre - s.radius - 0.5)), ivec2(0));
    ivec2 hi = min(ivec2(floor(s.centre + s.radius - 0.5)), size - 1);
    for (int y = lo.y; y <= hi.y; ++y) {
        for (int x = lo.x; x <= hi.x; ++x) {
            if (splat_covers(vec2(x, y) + 0.5, s.centre, s.radius)) atomicMin(s_keys[y * size.x + x], key);
        }
    }
}

void main() {
    uint first, width;
    if (!part_segment(invocation_id(), first, width)) return;
    uint at = value_index(first);
    vec2 start = neuron_cell(first);
    vec4 head = cell_clip(start);
    vec4 tail = cell_clip(vec2(start.x + float(width - 1u), start.y));
    // The clip volume is convex: both ends of the segment inside means every neuron is. w is linear along
    // it, so the largest radius is at an end: at most half a pixel there means one pixel each.
    if (clip_inside(head) && clip_inside(tail) && u_radius_k <= 0.5 * min(head.w, tail.w)) {
        for (uint k = 0u; k < width; ++k) {
            vec4 clip = cell_clip(vec2(start.x + float(k), start.y));
            merge(pixel_index(clip_to_window(clip, 1.0 / clip.w)), neuron_key(clip.w, at + k));
        }
    } else {
        for (uint k = 0u; k < width; ++k) {
            Splat s = project_cell(vec2(start.x + float(k), start.y));
            if (!s.visible) continue;
            uint key = neuron_key(s.w, at + k);
            if (s.radius > 0.5) splat(s, key);
            else merge(pixel_index(s.centre), key);
        }
    }
    if (g_pending >= 0) atomicMin(s_keys[g_pending], g_best);
}
