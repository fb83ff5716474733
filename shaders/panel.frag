#version 430
// panel.frag: an RGB image as is, or scalar texels through the colour code table (weights).
// Uniforms: sampler2D u_texture; uint u_rgb; for atlases uvec2 u_cell (kernel + gap texels) and
//   uvec2 u_kernel (kernel texels), uvec2 u_offset (the tile's place in a tiled atlas): texels in the gap between kernels are not drawn. See colormap.glsl.
#include "common/colormap.glsl"

uniform sampler2D u_texture;
uniform uint u_rgb;
uniform uvec2 u_cell;
uniform uvec2 u_kernel;
uniform uvec2 u_offset;  // this tile's first texel within the whole atlas

in vec2 v_uv;
out vec4 o_colour;

void main() {
    if (u_rgb == 1u) {
        o_colour = vec4(texture(u_texture, v_uv).rgb, 1.0);
        return;
    }
    ivec2 size = textureSize(u_texture, 0);
    ivec2 t = min(ivec2(v_uv * vec2(size)), size - 1);
    uvec2 inside = (uvec2(t) + u_offset) % u_cell;
    if (any(greaterThanEqual(inside, u_kernel))) discard;
    o_colour = code_colour(colour_code(texelFetch(u_texture, t, 0).r));
}
