#version 430
// pick.comp: which neuron is drawn at one pixel, found with the renderers' own projection and coverage
// rule (common/camera.glsl) so the answer is the neuron on screen there. One invocation per row segment of
// the current layer's bound part, as raster.comp. Stages, each dispatched over every candidate (a layer's
// part; a layer bound whole is one):
//   0: the smallest key among the layer's neurons covering the pixel, per layer and over all layers;
//   1: (one invocation per candidate) the first candidate holding the overall smallest key;
//   2: in that candidate only, the lowest neuron index (in its layer) with that key.
// The key orders neurons as the renderer resolves them: u_key_mode 0 is raster.comp's key (22 depth bits
// and the colour code), 1 is the depth test's window z (point sprites; ties go to the first drawn).
// Storage: s_values (binding 0, the part's values as a range), s_pick (binding 2):
//   [0] smallest key, [1] winning slot, [2] winning neuron index, [3 + slot] each candidate's smallest key.
#include "common/camera.glsl"
#include "common/layer.glsl"
#include "common/colormap.glsl"

layout(local_size_x = 128) in;
#include "common/dispatch.glsl"
layout(std430, binding = 0) readonly buffer Values { float s_values[]; };
layout(std430, binding = 2) buffer Pick { uint s_pick[]; };

uniform ivec2 u_pick;     // the pixel, window coordinates (y up)
uniform uint u_slot;      // this candidate's place among them
uniform uint u_slots;     // how many candidates (stage 1)
uniform int u_stage;
uniform int u_key_mode;

bool covers_pick(Splat s) {
    ivec2 size = ivec2(u_viewport);
    if (s.radius <= 0.5) return min(ivec2(floor(s.centre)), size - 1) == u_pick;
    ivec2 lo = max(ivec2(ceil(s.centre - s.radius - 0.5)), ivec2(0));
    ivec2 hi = min(ivec2(floor(s.centre + s.radius - 0.5)), size - 1);
    if (any(lessThan(u_pick, lo)) || any(greaterThan(u_pick, hi))) return false;
    return splat_covers(vec2(u_pick) + 0.5, s.centre, s.radius);
}

uint pick_key(Splat s, uint i) {
    if (u_key_mode == 0) return (floatBitsToUint(s.w) & 0xFFFFFC00u) | colour_code(s_values[i]);
    return floatBitsToUint(s.clip.z / s.clip.w * 0.5 + 0.5);
}

void main() {
    uint id = invocation_id();
    if (u_stage == 1) {
        if (id < u_slots && s_pick[3u + id] == s_pick[0]) atomicMin(s_pick[1], id);
        return;
    }
    if (u_stage == 2 && s_pick[1] != u_slot) return;
    uint first, width;
    if (!part_segment(id, first, width)) return;
    vec2 start = neuron_cell(first);
    uint best = 0xFFFFFFFFu;
    for (uint k = 0u; k < width; ++k) {
        Splat s = project_cell(vec2(start.x + float(k), start.y));
        if (!s.visible || !covers_pick(s)) continue;
        uint key = pick_key(s, value_index(first + k));
        if (u_stage == 0) best = min(best, key);
        else if (key == s_pick[0]) {
            atomicMin(s_pick[2], first + k);
            return;
        }
    }
    if (u_stage == 0 && best != 0xFFFFFFFFu) {
        atomicMin(s_pick[0], best);
        atomicMin(s_pick[3u + u_slot], best);
    }
}
