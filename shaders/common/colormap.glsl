// colormap.glsl: value -> 10-bit colour code -> RGBA, shared by every renderer (mirrors glnet.colormap).
//
// Uniforms
//   vec2      u_range      (lo, 1 / (hi - lo)) of the layer's robust range
//   uint      u_diverging  1: signed layer, diverging map; 0: sequential map
//   sampler2D u_lut        1024 x 1 RGBA8 table indexed by code
// Codes: [0, LEVELS) sequential, [LEVELS, 2 LEVELS) diverging, then NaN, +Inf, -Inf; 1023 is empty.
#ifndef GLNET_COLORMAP_GLSL
#define GLNET_COLORMAP_GLSL

#define CODE_LEVELS 480u
#define CODE_NAN 960u
#define CODE_POS_INF 961u
#define CODE_NEG_INF 962u
#define CODE_EMPTY 1023u

uniform vec2 u_range;
uniform uint u_diverging;
uniform sampler2D u_lut;

uint colour_code(float v) {
    if (isnan(v)) return CODE_NAN;
    if (isinf(v)) return v > 0.0 ? CODE_POS_INF : CODE_NEG_INF;
    float t = clamp((v - u_range.x) * u_range.y, 0.0, 1.0);
    return uint(floor(t * float(CODE_LEVELS - 1u) + 0.5)) + u_diverging * CODE_LEVELS;
}

vec4 code_colour(uint code) {
    return texelFetch(u_lut, ivec2(int(code), 0), 0);
}

#endif
