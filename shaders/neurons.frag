#version 430
// neurons.frag: keep the fragments of the disc (splat_covers), coloured by the code's table entry.
#include "common/camera.glsl"
#include "common/colormap.glsl"

flat in uint v_code;
flat in vec2 v_centre;
flat in float v_radius;

out vec4 o_colour;

void main() {
    if (!splat_covers(gl_FragCoord.xy, v_centre, v_radius)) discard;
    o_colour = code_colour(v_code);
}
