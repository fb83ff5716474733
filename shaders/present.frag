#version 430
// present.frag: turn the compute rasterizer's keys into colour and depth, so GL can draw panels on top
// (GLNET_NO_DEPTH: colour only, when nothing depth-tested follows).
// Storage: s_keys (binding 1). Uniforms: u_viewport (camera.glsl), u_lut (colormap.glsl),
//   vec2 u_depth (P[2][2], P[2][3]) of the projection, to rebuild window depth from view depth.
#include "common/colormap.glsl"

layout(std430, binding = 1) readonly buffer Keys { uint s_keys[]; };
uniform vec2 u_viewport;
uniform vec2 u_depth;

out vec4 o_colour;

void main() {
    ivec2 p = ivec2(gl_FragCoord.xy);
    uint key = s_keys[p.y * int(u_viewport.x) + p.x];
    if (key == 0xFFFFFFFFu) discard;
    o_colour = code_colour(key & 1023u);
#ifndef GLNET_NO_DEPTH
    float w = uintBitsToFloat(key & 0xFFFFFC00u);
    float ndc_z = (u_depth.y - u_depth.x * w) / w;
    gl_FragDepth = clamp(0.5 * ndc_z + 0.5, 0.0, 1.0);
#endif
}
